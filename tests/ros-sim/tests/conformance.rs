//! Every (menu, command, argument) in the simulator's schema table exists in
//! RouterOS 7.24's `/console/inspect` (../shared/data/routeros, when present).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use warren_ros_sim::schema::menus;

fn subset() -> Option<serde_json::Value> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/routeros/inspect-7.24-subset.json");
    let text = std::fs::read_to_string(&p).ok()?;
    Some(serde_json::from_str(&text).expect("the inspect subset is JSON"))
}

#[test]
fn schema_table_matches_routeros_7_24() {
    let Some(inspect) = subset() else {
        eprintln!("SKIPPED: ../shared/data/routeros/inspect-7.24-subset.json not present");
        return;
    };
    let mut checked = 0;
    let mut missing = Vec::new();
    let mut not_checked = Vec::new();
    for m in menus() {
        if !m.in_subset {
            not_checked.push(m.path);
            continue;
        }
        let Some(cmds) = inspect["menus"][format!("/{}", m.path)]["commands"].as_object() else {
            missing.push(format!("/{}: menu absent", m.path));
            continue;
        };
        for c in &m.commands {
            let Some(args) = cmds.get(*c).and_then(|a| a.as_object()) else {
                missing.push(format!("/{} {c}: command absent", m.path));
                continue;
            };
            for a in m.args_of(c) {
                checked += 1;
                if !args.contains_key(a) {
                    missing.push(format!("/{} {c} {a}", m.path));
                }
            }
        }
    }
    eprintln!(
        "checked {checked} arguments; not checked (absent from the subset): {}",
        not_checked.join(", ")
    );
    assert!(missing.is_empty(), "not in RouterOS 7.24: {missing:#?}");
    assert!(checked > 300, "only {checked} arguments checked");
    assert_eq!(not_checked, ["interface", "system/identity", "system/resource"]);
}
