//! The shipped systemd units parse and point at real binaries
//! (`systemd-analyze verify`, with ExecStart rewritten to this build).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use warren_tests::{bin, root};

#[test]
fn units_verify() {
    let dir = std::env::temp_dir().join(format!("warren-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (unit, binary) in [
        ("warren-agent.service", "warren-agent"),
        ("warren-controller.service", "warren-controller"),
    ] {
        let text = std::fs::read_to_string(root().join("examples/systemd").join(unit)).unwrap();
        assert!(
            text.contains(&format!("ExecStart=/usr/local/bin/{binary} ")),
            "{unit}"
        );
        let text = text.replace(
            &format!("/usr/local/bin/{binary}"),
            &bin(binary).display().to_string(),
        );
        let path = dir.join(unit);
        std::fs::write(&path, text).unwrap();
        let o = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze");
        let err = String::from_utf8_lossy(&o.stderr);
        // Only complaints about this unit count (the host's own units may be odd).
        let ours: Vec<&str> = err.lines().filter(|l| l.contains(unit)).collect();
        assert!(o.status.success() && ours.is_empty(), "{unit}:\n{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
