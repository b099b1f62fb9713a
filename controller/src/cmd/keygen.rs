//! `warren-controller keygen`: create the controller's signing key and print
//! its public half (what agents list in `trusted_controller_keys`).

use super::Outcome;
use std::path::PathBuf;
use warren_host::outln;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Outcome {
    let key = crate::keys::generate(&args.out)?;
    outln!("{}", warren_wire::key_base64(&key.verifying_key()));
    Ok(())
}
