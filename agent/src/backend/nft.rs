//! The `ip warren` nftables table: replaced whole in one atomic libnftables
//! JSON transaction (`nft -j -f -`), read back with `nft -j` and normalized
//! for comparison.
//! No other table is ever read or written.

use super::{Backend, Owned, Scope};
use crate::sys::Sys;
use anyhow::Result;
use std::path::Path;
use warren_plan::{NftState, Op, State};

pub struct Nft;

pub use warren_plan::nft::TABLE;

pub use warren_plan::nft::normalize_listing as normalize;

pub fn read(sys: &Sys) -> Result<Option<NftState>> {
    match sys.read("nft", &["-j", "list", "table", "ip", TABLE]) {
        Ok(out) => Ok(normalize(&out).map(|normalized| NftState { normalized })),
        Err(e) if e.to_string().contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

impl Backend for Nft {
    fn name(&self) -> &'static str {
        "nftables"
    }
    fn observe(&self, sys: &Sys, _: &Scope, state: &mut State) -> Result<()> {
        state.nft = read(sys)?;
        Ok(())
    }
    fn handles(&self, op: &Op) -> bool {
        matches!(op, Op::ReplaceTable { .. } | Op::DeleteTable)
    }
    fn apply(&mut self, sys: &mut Sys, _: &mut Owned, _: &Path, op: &Op) -> Result<()> {
        match op {
            Op::ReplaceTable { table } => {
                // One libnftables JSON transaction: all of it or none of it.
                sys.write(
                    "nft",
                    &["-j", "-f", "-"],
                    Some(&table.to_json_replace().to_string()),
                )?;
            }
            Op::DeleteTable => {
                sys.write("nft", &["delete", "table", "ip", TABLE], None)?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalize_drops_handles_and_metainfo() {
        let a = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"table":{"family":"ip","name":"warren","handle":3}},{"rule":{"chain":"c","handle":7,"expr":[{"counter":{"packets":5,"bytes":300}}]}}]}"#;
        let b = r#"{"nftables":[{"metainfo":{"version":"1.0.7"}},{"table":{"name":"warren","family":"ip","handle":9}},{"rule":{"chain":"c","handle":8,"expr":[{"counter":{"packets":0,"bytes":0}}]}}]}"#;
        assert_eq!(super::normalize(a), super::normalize(b));
        assert!(super::normalize("not json").is_none());
    }
}
