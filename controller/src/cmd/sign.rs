//! `warren-controller sign`: compile, sign and write one plan file per host
//! (`HOST.plan.json`), for delivering plans by hand.

use super::desired::compiled;
use super::{Failure, Outcome};
use anyhow::Context;
use std::path::PathBuf;
use warren_host::outln;

#[derive(clap::Args, Debug)]
pub struct Args {
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
}

pub fn run(args: Args) -> Outcome {
    let signing = crate::keys::load(&args.key)?;
    let (src, plans) = compiled(&args.path, args.rev.as_deref(), args.keys.as_deref())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let now = warren_host::unix_now();
    for (name, plan) in plans {
        if args.host.as_ref().is_some_and(|h| h != &name) {
            continue;
        }
        if !args.allow_pending {
            refuse_pending(&name, &plan)?;
        }
        let sp = warren_plan::sign(plan, args.serial, &src.commit, args.confirm_secs, now, &signing);
        let file = args.out.join(format!("{name}.plan.json"));
        std::fs::write(&file, warren_plan::canonical(&sp))
            .with_context(|| format!("cannot write {}", file.display()))?;
        outln!(
            "{} serial {} sha256 {}",
            file.display(),
            args.serial,
            sp.envelope.plan_sha256
        );
    }
    Ok(())
}

/// A plan that still lacks peer keys is not signed unless asked to be.
fn refuse_pending(name: &str, plan: &warren_plan::Plan) -> Outcome {
    let pending = plan.pending_keys();
    if pending.is_empty() {
        return Ok(());
    }
    let p: Vec<String> = pending.iter().map(|(h, i)| format!("{h}/{i}")).collect();
    eprintln!(
        "error: plan for {name} lacks peer keys: {} (pass --keys, or --allow-pending)",
        p.join(", ")
    );
    Err(Failure::Invalid)
}
