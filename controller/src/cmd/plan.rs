//! `warren-controller plan`: compile and show each host's plan, as text for
//! people, as JSON with each plan's hash, or (RouterOS routers) as the
//! RouterOS script a person could paste into the router's terminal.

use super::desired::{compiled, Plans};
use super::{names_only, usage, Outcome};
use std::path::PathBuf;
use warren_host::{out, outln};

/// How `plan` prints: the shared text and JSON, plus RouterOS's own script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// For people.
    Text,
    /// For programs (pretty-printed JSON).
    Json,
    /// RouterOS routers only: the plan as a RouterOS v7 console script.
    Routeros,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    path: PathBuf,
    #[arg(long)]
    rev: Option<String>,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    #[arg(long, value_parser = names_only::<PlanFormat>(), default_value = "text")]
    format: PlanFormat,
    /// JSON file of known WireGuard keys: {"host": {"interface": "key"}}.
    #[arg(long)]
    keys: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let (src, plans) = compiled(&args.path, args.rev.as_deref(), args.keys.as_deref())?;
    let selected = select(&plans, args.host.as_deref())?;
    match args.format {
        PlanFormat::Routeros => {
            let scripts = routeros_scripts(&selected, args.host.as_deref(), &args.path)?;
            outln!("# commit {}", src.commit);
            for s in scripts {
                outln!();
                out!("{s}");
            }
        }
        PlanFormat::Text => {
            outln!("# commit {}", src.commit);
            for (_, p) in selected {
                outln!();
                out!("{}", p.render_text());
            }
        }
        PlanFormat::Json => {
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
    Ok(())
}

/// All plans, or only `host`'s: asking for a host without a plan is a
/// usage error that names the hosts that have one.
fn select<'a>(
    plans: &'a Plans,
    host: Option<&str>,
) -> Result<Vec<(&'a String, &'a warren_plan::Plan)>, super::Failure> {
    if let Some(h) = host {
        if !plans.contains_key(h) {
            return Err(usage(format!(
                "no plan for host {h:?}; hosts with plans: {}",
                plans.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(plans
        .iter()
        .filter(|(n, _)| host.is_none_or(|h| h == *n))
        .collect())
}

/// The RouterOS scripts of the selected plans: asking for a Linux host, or
/// for a file without a RouterOS router, is a usage error.
fn routeros_scripts(
    selected: &[(&String, &warren_plan::Plan)],
    host: Option<&str>,
    path: &std::path::Path,
) -> Result<Vec<String>, super::Failure> {
    if let (Some(h), Some((_, p))) = (host, selected.first()) {
        if p.routeros.is_none() {
            return Err(usage(format!(
                "host {h:?} is not a RouterOS router (platform {}); --format routeros prints only RouterOS plans",
                p.platform.as_str()
            )));
        }
    }
    let scripts: Vec<String> = selected.iter().filter_map(|(_, p)| p.routeros_script()).collect();
    if scripts.is_empty() {
        return Err(usage(format!(
            "{} has no RouterOS router (platform: routeros); --format routeros prints only RouterOS plans",
            path.display()
        )));
    }
    Ok(scripts)
}
