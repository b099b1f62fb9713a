//! The `warren-controller` commands: one module per command, each holding
//! its clap `Args` and a `run` that returns an [`Outcome`], plus what several
//! commands share ([`desired`]: reading and compiling the desired state).
//!
//! Commands print their own results (stdout) and diagnostics (stderr). They
//! must not exit the process or pick exit codes: a command fails with a
//! [`Failure`], and `main` turns that into the documented exit code.

pub mod client_config;
pub mod desired;
pub mod init;
pub mod keygen;
pub mod plan;
pub mod preview;
pub mod schema;
pub mod serve;
pub mod sign;
pub mod status;
pub mod sync;
pub mod validate;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::ValueEnum;
use std::process::ExitCode;

/// Why a command failed. Each kind has one exit code (see `main.rs`).
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: the desired state is invalid, or a plan cannot be compiled or
    /// signed as asked. Why has already been printed on stderr.
    Invalid,
    /// Exit 2: a usage or I/O error, still to be printed as `error: …`.
    Usage(anyhow::Error),
}

/// What a command returns.
pub type Outcome = Result<(), Failure>;

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid => 1,
            Failure::Usage(_) => 2,
        }
    }

    /// Print what has not been printed yet, and give the exit code.
    pub fn report(self) -> ExitCode {
        if let Failure::Usage(e) = &self {
            eprintln!("error: {e:#}");
        }
        ExitCode::from(self.exit_code())
    }
}

/// Any error that reaches a command's `?` is a usage or I/O error.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Usage(e.into())
    }
}

/// A usage error with this message (exit 2).
pub fn usage(message: String) -> Failure {
    Failure::Usage(anyhow::Error::msg(message))
}

/// Parses one of `E`'s values, listing only their names in `--help` (as
/// `[possible values: text, json]`), as the controller always has: the shared
/// `warren_host::cli` enums document each value, which clap would otherwise
/// print as a list under every `--format`.
pub fn names_only<E>() -> impl TypedValueParser<Value = E>
where
    E: ValueEnum + Clone + Send + Sync + 'static,
{
    let names = E::value_variants()
        .iter()
        .filter_map(ValueEnum::to_possible_value)
        .map(|v| v.help(None::<&'static str>));
    PossibleValuesParser::new(names).try_map(|name| E::from_str(&name, false))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use warren_host::cli::Format;

    #[test]
    fn exit_codes_are_the_documented_ones() {
        assert_eq!(Failure::Invalid.exit_code(), 1);
        let io = std::io::Error::other("disk on fire");
        assert_eq!(Failure::from(io).exit_code(), 2);
        assert_eq!(usage("no such host".into()).exit_code(), 2);
    }

    #[test]
    fn names_only_parses_every_value_and_drops_their_help() {
        let cmd = clap::Command::new("t").arg(
            clap::Arg::new("format")
                .long("format")
                .value_parser(names_only::<Format>()),
        );
        let m = cmd
            .clone()
            .try_get_matches_from(["t", "--format", "json"])
            .unwrap();
        assert_eq!(m.get_one::<Format>("format"), Some(&Format::Json));
        let e = cmd
            .clone()
            .try_get_matches_from(["t", "--format", "yaml"])
            .unwrap_err();
        assert!(e.to_string().contains("[possible values: text, json]"), "{e}");
        let arg = cmd.get_arguments().next().unwrap();
        let values = arg.get_possible_values();
        assert_eq!(values.len(), 2);
        assert!(values.iter().all(|v| v.get_help().is_none()));
    }
}
