// Records the git commit this binary is built from, for `--version`
// (`WARREN_GIT_COMMIT`): `git rev-parse HEAD` of the source tree, or the
// `WARREN_GIT_COMMIT` environment variable when set (a build from a source
// tarball), or `unknown` outside git. Deterministic: no dates, no dirty flag.
// Both binaries' `build.rs` include this one file (`include!`).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=WARREN_GIT_COMMIT");
    let commit = match std::env::var("WARREN_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git(&["rev-parse", "HEAD"])
            .filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| "unknown".to_string()),
    };
    // Rebuild when HEAD moves: HEAD itself, the branch it points at, packed refs.
    let mut watch = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch.push(Path::new(&dir).join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        let common = std::env::var("CARGO_MANIFEST_DIR")
            .map(|m| Path::new(&m).join(&common))
            .unwrap_or_default();
        watch.push(common.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(branch));
        }
    }
    for p in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=WARREN_GIT_COMMIT={commit}");
}
