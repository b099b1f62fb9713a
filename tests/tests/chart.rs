//! charts/warren-controller lints strictly, renders with the default values
//! and the edge sets in its ci/ directory, validates against the Kubernetes
//! 1.29 and 1.33 schemas, and refuses bad values through values.schema.json
//! (scripts/chart-test.sh: Helm's Go library from PyPI `helm-python-sdk`,
//! schemas from PyPI `kubernetes-validate`, in a venv under target/).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use warren_tests::root;

#[test]
fn chart_lints_renders_validates_and_refuses_bad_values() {
    let started = std::time::Instant::now();
    let out = std::process::Command::new("bash")
        .arg(root().join("scripts/chart-test.sh"))
        .output()
        .expect("bash scripts/chart-test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    println!("chart test: {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "scripts/chart-test.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The script's own summary, so a script that stopped early cannot pass.
    assert!(stdout.contains("chart: 0 failures"), "{stdout}");
    assert!(
        stdout.contains("helm lint --strict: 10 runs"),
        "lint did not run per set and version:\n{stdout}"
    );
    assert!(
        stdout.contains("bad value sets refused by values.schema.json"),
        "{stdout}"
    );
}
