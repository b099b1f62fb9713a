//! Man pages and shell completions generated from a binary's command line
//! (clap), for the Debian packages (`scripts/build-debs.sh`). Each binary
//! exposes it as a hidden `generate-docs --out DIR` subcommand, so the pages
//! always match the flags the binary really takes.
//!
//! Layout under `DIR`: `man/NAME.1` and `man/NAME-SUBCOMMAND.1` (hidden
//! subcommands have none), `completions/NAME.bash`, `completions/_NAME`
//! (zsh), `completions/NAME.fish`.

use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Writes the man pages and completions of `cmd` under `out` (created as
/// needed) and returns every file written, sorted.
pub fn write(cmd: clap::Command, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let name = cmd.get_name().to_string();
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let mut cmd = without_hidden_subcommands(&cmd);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, name.clone(), &comp)?;
    }
    let mut files = Vec::new();
    for dir in [&man, &comp] {
        for entry in std::fs::read_dir(dir)? {
            files.push(entry?.path());
        }
    }
    files.sort();
    Ok(files)
}

/// `cmd` with its top-level arguments and visible subcommands only:
/// clap_complete would offer hidden subcommands (such as `generate-docs`)
/// too, and clap cannot remove a subcommand, so the command is rebuilt.
fn without_hidden_subcommands(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    #[test]
    fn pages_and_completions_for_each_visible_subcommand() -> std::io::Result<()> {
        let out = std::env::temp_dir().join(format!("warren-gendocs-{}", std::process::id()));
        let cmd = Command::new("demo")
            .about("a demo")
            .subcommand(
                Command::new("run")
                    .about("runs")
                    .arg(Arg::new("plan").long("plan")),
            )
            .subcommand(Command::new("secret").hide(true));
        let files = write(cmd, &out)?;
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.strip_prefix(&out).ok())
            .map(|p| p.display().to_string())
            .collect();
        let bash = std::fs::read_to_string(out.join("completions/demo.bash"))?;
        let _ = std::fs::remove_dir_all(&out);
        assert!(bash.contains("run") && !bash.contains("secret"), "{bash}");
        assert_eq!(
            names,
            [
                "completions/_demo",
                "completions/demo.bash",
                "completions/demo.fish",
                "man/demo-run.1",
                "man/demo.1"
            ]
        );
        Ok(())
    }
}
