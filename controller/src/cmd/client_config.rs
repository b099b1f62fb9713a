//! `warren-controller client-config`: print a private VPN client's wg-quick
//! configuration, with the peers' public keys from the desired state, a keys
//! file, or what agents reported to the service.

use super::desired::{keybook, load};
use super::{usage, Outcome};
use anyhow::Result;
use std::path::{Path, PathBuf};
use warren_compiler::KeyBook;
use warren_host::out;

#[derive(clap::Args, Debug)]
pub struct Args {
    path: PathBuf,
    client: String,
    #[arg(long)]
    rev: Option<String>,
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Use the WireGuard keys agents reported to the service in this state dir.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let (_, cfg) = load(&args.path, args.rev.as_deref())?;
    let mut kb = keybook(&cfg, args.keys.as_deref())?;
    if let Some(dir) = &args.state_dir {
        reported_keys(&mut kb, dir)?;
    }
    match warren_compiler::client_config(&cfg, &kb, &args.client) {
        Some(s) => {
            out!("{s}");
            Ok(())
        }
        None => Err(usage(format!("no private VPN client {:?}", args.client))),
    }
}

/// Add the WireGuard keys agents reported, from the service's `status.json`.
fn reported_keys(kb: &mut KeyBook, dir: &Path) -> Result<()> {
    for (host, iface, key) in crate::serve::status::reported_wireguard_keys(dir)? {
        kb.insert(&host, &iface, &key);
    }
    Ok(())
}
