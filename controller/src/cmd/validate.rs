//! `warren-controller validate`: check the desired state and that it
//! compiles; print every diagnostic and a one-line summary.

use super::desired::{compile_reported, load};
use super::Outcome;
use std::path::PathBuf;
use warren_compiler::KeyBook;
use warren_host::outln;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A directory holding warren.yaml, the file itself, or a git repo (with --rev).
    path: PathBuf,
    /// Read warren.yaml from this git revision instead of the work tree.
    #[arg(long)]
    rev: Option<String>,
}

pub fn run(args: Args) -> Outcome {
    let (src, cfg) = load(&args.path, args.rev.as_deref())?;
    compile_reported(&src, &cfg, &KeyBook::pinned(&cfg))?;
    outln!(
        "{}: valid ({} hosts, {} forwards, {} private VPN clients)",
        src.name,
        cfg.hosts.len(),
        cfg.forwards.len(),
        cfg.private.as_ref().map_or(0, |p| p.clients.len())
    );
    Ok(())
}
