//! `warren-controller`: turns the desired-state repo into signed per-host plans.
//!
//! Exit codes: 0 success; 1 the desired state is invalid (diagnostics on
//! stderr) or a plan cannot be compiled; 2 usage or I/O error.
//!
//! This file is the command line's shape only: the subcommands, and a `run`
//! that hands each to its function in [`cmd`]. [`cmd::Failure`] holds the
//! mapping from failures to the exit codes above.

mod cmd;
mod forge;
mod http;
mod keys;
mod metrics;
mod serve;
mod source;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use warren_host::cli::Format;

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
    name = "warren-controller",
    version = VERSION,
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
    /// Send a host (or every host) its current plan again, so its agent
    /// converges to it once more (repairs drift under `drift: report`).
    Sync(cmd::sync::Args),
    /// Create the controller's ed25519 signing key (0600) and print its public half.
    Keygen(cmd::keygen::Args),
    /// Compile, sign and write one plan file per host (`HOST.plan.json`).
    Sign(cmd::sign::Args),
    /// Print the pull request comment for merging --head onto --base, offline.
    Preview(cmd::preview::Args),
    /// Scaffold a desired-state repository: a commented warren.yaml from a
    /// few flags, the JSON Schema hook for editors, a README, a first commit.
    Init(cmd::init::Args),
    /// Write the man pages and shell completions (packaging: scripts/build-debs.sh).
    #[command(hide = true)]
    GenerateDocs {
        #[arg(long)]
        out: PathBuf,
    },
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
        Cmd::Status { state_dir, format } => cmd::status::run(&state_dir, format),
        Cmd::Sync(args) => cmd::sync::run(args),
        Cmd::Keygen(args) => cmd::keygen::run(args),
        Cmd::Sign(args) => cmd::sign::run(args),
        Cmd::Preview(args) => cmd::preview::run(args),
        Cmd::Init(args) => cmd::init::run(args),
        Cmd::GenerateDocs { out } => generate_docs(&out),
    }
}

/// The hidden `generate-docs`: man pages and completions from this command
/// line, one path per line on stdout.
fn generate_docs(out: &std::path::Path) -> cmd::Outcome {
    use clap::CommandFactory;
    for file in warren_host::gendocs::write(Cli::command(), out)? {
        warren_host::outln!("{}", file.display());
    }
    Ok(())
}
