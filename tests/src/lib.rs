//! Test support for Warren's workspace-level tests: locating the examples and
//! compiling them, and running commands inside throwaway network namespaces.
//! It owns no product logic and must never touch the host's own namespace.

// Test support fails loudly: a panic here is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]
pub mod lab;
pub mod mikrotik;
pub mod world;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use warren_compiler::{compile, KeyBook};
use warren_plan::Plan;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A workspace binary (`warren-agent`, `warren-controller`) next to the
/// running test executable; `./test.sh` builds them before the tests run.
pub fn bin(name: &str) -> PathBuf {
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let exe = std::env::current_exe().expect("current_exe");
    let here = exe.parent().expect("exe dir");
    let candidates = [
        here.join(name),
        here.parent().map(|p| p.join(name)).unwrap_or_default(),
    ];
    let found = candidates.iter().find(|p| p.is_file()).cloned();
    found.unwrap_or_else(|| {
        panic!(
            "{name} is not built next to {}: run `cargo build --workspace --bins` (./test.sh does)",
            exe.display()
        )
    })
}

/// Run `cmd` with bash in `dir`, assert it succeeded, return its stdout
/// (trimmed).
pub fn sh(dir: &Path, cmd: &str) -> String {
    let o = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every example directory holding a `warren.yaml`, sorted by name.
pub fn examples() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("examples"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("warren.yaml").is_file())
                .map(|p| {
                    (
                        p.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        p,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Compile an example directory with the keys pinned in its YAML.
pub fn compile_example(dir: &Path) -> BTreeMap<String, Plan> {
    let file = dir.join("warren.yaml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let (cfg, diags) = warren_model::load_str(&text, &file.display().to_string());
    let cfg = cfg.unwrap_or_else(|| panic!("{} is invalid:\n{diags}", file.display()));
    compile(&cfg, &KeyBook::pinned(&cfg)).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A network namespace that is deleted when dropped (even on panic). Names
/// carry the process id and a counter, so leftovers never collide.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wt-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "cannot create network namespace {name} (tests need root and iproute2; run ./test.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }

    /// Run a command inside the namespace, feeding `stdin`.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        if let Some(mut si) = child.stdin.take() {
            if let Some(s) = stdin {
                si.write_all(s.as_bytes()).expect("write stdin");
            }
        }
        child.wait_with_output().expect("wait")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}
