//! Every compiled nftables table loads into a real kernel (a throwaway
//! network namespace, via `nft -f`), and reads back with its forwards. A rule
//! string that merely looks right is not enough. Needs root and nftables
//! (`./test.sh` installs them).

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use warren_plan::Firewall;
use warren_tests::{compile_example, examples, Netns};

#[test]
fn compiled_tables_load_into_a_real_kernel() {
    let mut loaded = 0;
    for (name, dir) in examples() {
        for (host, plan) in compile_example(&dir) {
            let Firewall::Nftables(table) = &plan.firewall else {
                continue;
            };
            let ns = Netns::new("nft");
            let script = table.render();
            let out = ns.run(&["nft", "-f", "-"], Some(&script));
            assert!(
                out.status.success(),
                "{name}/{host}: nft refused the table:\n{}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = ns.run(&["nft", "-j", "list", "table", "ip", "warren"], None);
            assert!(out.status.success(), "{name}/{host}: cannot list table");
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j output is JSON");
            let items = json["nftables"].as_array().expect("nftables array");
            let chains = items.iter().filter(|i| i.get("chain").is_some()).count();
            assert_eq!(chains, table.chains.len(), "{name}/{host}: chains read back");
            // Every forward element made it into the kernel's maps.
            for m in &table.maps {
                let live = items
                    .iter()
                    .filter_map(|i| i.get("map"))
                    .find(|x| x["name"] == m.name.as_str())
                    .unwrap_or_else(|| panic!("{name}/{host}: map {} missing", m.name));
                let n = live.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len);
                assert_eq!(n, m.elements.len(), "{name}/{host}: elements of {}", m.name);
            }
            loaded += 1;
        }
    }
    assert!(
        loaded >= 4,
        "expected gateway and router tables of at least two examples, loaded {loaded}"
    );
}
