//! The table reviewers read and the table the agent applies are one table.
//!
//! Reviewers read [`NftTable::render`] (`nft -f` text, in the snapshots);
//! the agent applies [`NftTable::to_json_replace`] (`nft -j -f -`). For every
//! example and host, each rendering is loaded into its own fresh network
//! namespace, read back with `nft -j list table`, normalized (handles,
//! counter values and metainfo dropped, as the agent does) and compared. The
//! read-back must also hold every chain, rule and element of the AST, so two
//! equally empty listings cannot pass. Needs root and nftables.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use serde_json::Value;
use warren_plan::nft::{normalize_listing, NftTable, TABLE};
use warren_plan::Firewall;
use warren_tests::{compile_example, examples, Netns};

/// Load `input` with `nft_args` into a fresh namespace and return the
/// normalized listing of Warren's table there.
fn load_and_list(what: &str, rendering: &str, nft_args: &[&str], input: &str) -> Vec<Value> {
    let ns = Netns::new(&format!("nft-{rendering}"));
    let out = ns.run(nft_args, Some(input));
    assert!(
        out.status.success(),
        "{what}: nft refused the {rendering} rendering:\n{}\n{input}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ns.run(&["nft", "-j", "list", "table", "ip", TABLE], None);
    assert!(
        out.status.success(),
        "{what}: cannot list the table loaded from {rendering}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let normalized = normalize_listing(&listing)
        .unwrap_or_else(|| panic!("{what}: {rendering} read-back is not nft JSON:\n{listing}"));
    match serde_json::from_str(&normalized) {
        Ok(Value::Array(items)) => items,
        other => panic!("{what}: normalized {rendering} read-back is not a list: {other:?}"),
    }
}

/// The objects of one kind (`chain`, `rule`, `set`, `map`) in a listing.
fn objects<'a>(items: &'a [Value], kind: &str) -> Vec<&'a Value> {
    items.iter().filter_map(|i| i.get(kind)).collect()
}

fn elements(objects: &[&Value]) -> usize {
    objects
        .iter()
        .map(|o| o.get("elem").and_then(Value::as_array).map_or(0, Vec::len))
        .sum()
}

/// The read-back holds the whole AST: its chains, rules, set and map
/// elements, and at least some of each kind the table has.
fn assert_complete(what: &str, table: &NftTable, items: &[Value]) {
    let chains = objects(items, "chain");
    let rules = objects(items, "rule");
    let sets = objects(items, "set");
    let maps = objects(items, "map");
    let want_rules: usize = table.chains.iter().map(|c| c.rules.len()).sum();
    let want_set_elements: usize = table.sets.iter().map(|s| s.elements.len()).sum();
    let want_map_elements: usize = table.maps.iter().map(|m| m.elements.len()).sum();
    assert!(
        !table.chains.is_empty() && want_rules > 0,
        "{what}: the AST itself is empty"
    );
    assert!(
        want_set_elements + want_map_elements > 0,
        "{what}: the AST has no set or map elements to check"
    );
    assert_eq!(chains.len(), table.chains.len(), "{what}: chains read back");
    assert_eq!(rules.len(), want_rules, "{what}: rules read back");
    assert_eq!(sets.len(), table.sets.len(), "{what}: sets read back");
    assert_eq!(maps.len(), table.maps.len(), "{what}: maps read back");
    assert_eq!(
        elements(&sets),
        want_set_elements,
        "{what}: set elements read back"
    );
    assert_eq!(
        elements(&maps),
        want_map_elements,
        "{what}: map elements read back"
    );
}

#[test]
fn text_and_json_renderings_load_as_the_same_table() {
    let mut compared = Vec::new();
    for (name, dir) in examples() {
        for (host, plan) in compile_example(&dir) {
            let Firewall::Nftables(table) = &plan.firewall else {
                continue;
            };
            let what = format!("{name}/{host}");
            let text = table.render();
            let json = table.to_json_replace().to_string();
            let from_text = load_and_list(&what, "text", &["nft", "-f", "-"], &text);
            let from_json = load_and_list(&what, "json", &["nft", "-j", "-f", "-"], &json);
            assert_complete(&what, table, &from_text);
            assert_complete(&what, table, &from_json);
            assert_eq!(from_text.len(), from_json.len(), "{what}: objects read back");
            for (t, j) in from_text.iter().zip(&from_json) {
                assert_eq!(
                    t, j,
                    "{what}: the kernel holds different tables for the two renderings\n  from text: {t}\n  from JSON: {j}"
                );
            }
            compared.push(what);
        }
    }
    // Both hosts of both examples (the gateway's sets, the router's maps).
    assert!(
        compared.len() >= 4,
        "expected gateway and router tables of at least two examples, compared {compared:?}"
    );
}
