//! `warren-controller plan`: compile and show each host's plan, as text for
//! people or as JSON with each plan's hash.

use super::desired::{compiled, Plans};
use super::{names_only, usage, Outcome};
use std::path::PathBuf;
use warren_host::cli::Format;
use warren_host::{out, outln};

#[derive(clap::Args, Debug)]
pub struct Args {
    path: PathBuf,
    #[arg(long)]
    rev: Option<String>,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    #[arg(long, value_parser = names_only::<Format>(), default_value = "text")]
    format: Format,
    /// JSON file of known WireGuard keys: {"host": {"interface": "key"}}.
    #[arg(long)]
    keys: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let (src, plans) = compiled(&args.path, args.rev.as_deref(), args.keys.as_deref())?;
    let selected = select(&plans, args.host.as_deref())?;
    match args.format {
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
