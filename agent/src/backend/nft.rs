//! The `ip warren` nftables table: replaced whole in one atomic libnftables
//! JSON transaction (`nft -j -f -`), read back with `nft -j` and normalized
//! for comparison.
//! No other table is ever read or written.

use super::{Backend, Claim, Scope};
use crate::sys::Sys;
use anyhow::Result;
use warren_plan::diff::NftOp;
use warren_plan::nft::TABLE;
use warren_plan::{NftState, State};

#[derive(Debug)]
pub struct Nft;

pub use warren_plan::nft::normalize_listing as normalize;

pub fn read(sys: &dyn Sys) -> Result<Option<NftState>> {
    match sys.read("nft", &["-j", "list", "table", "ip", TABLE]) {
        Ok(out) => Ok(normalize(&out).map(|normalized| NftState { normalized })),
        Err(e) if e.to_string().contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

impl Backend for Nft {
    type Op = NftOp;
    fn name(&self) -> &'static str {
        "nftables"
    }
    fn observe(&self, sys: &dyn Sys, _: &Scope, state: &mut State) -> Result<()> {
        state.nft = read(sys)?;
        Ok(())
    }
    fn apply(&mut self, sys: &mut dyn Sys, op: &NftOp) -> Result<Option<Claim>> {
        match op {
            NftOp::ReplaceTable { table } => {
                // One libnftables JSON transaction: all of it or none of it.
                sys.write(
                    "nft",
                    &["-j", "-f", "-"],
                    Some(&table.to_json_replace().to_string()),
                )?;
            }
            NftOp::DeleteTable => {
                sys.write("nft", &["delete", "table", "ip", TABLE], None)?;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Recorder;
    use warren_plan::nft::NftTable;

    #[test]
    fn normalize_drops_handles_and_metainfo() {
        let a = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"table":{"family":"ip","name":"warren","handle":3}},{"rule":{"chain":"c","handle":7,"expr":[{"counter":{"packets":5,"bytes":300}}]}}]}"#;
        let b = r#"{"nftables":[{"metainfo":{"version":"1.0.7"}},{"table":{"name":"warren","family":"ip","handle":9}},{"rule":{"chain":"c","handle":8,"expr":[{"counter":{"packets":0,"bytes":0}}]}}]}"#;
        assert_eq!(normalize(a), normalize(b));
        assert!(normalize("not json").is_none());
    }

    #[test]
    fn the_table_is_replaced_in_one_transaction_and_deleted_by_name() {
        let table = NftTable {
            name: TABLE.into(),
            sets: vec![],
            maps: vec![],
            chains: vec![],
        };
        let mut sys = Recorder::default();
        let mut nft = Nft;
        let op = NftOp::ReplaceTable { table: table.clone() };
        assert_eq!(nft.apply(&mut sys, &op).unwrap(), None);
        nft.apply(&mut sys, &NftOp::DeleteTable).unwrap();
        assert_eq!(
            sys.log,
            [
                format!("nft -j -f - <<< {}", table.to_json_replace()),
                "nft delete table ip warren".to_string()
            ]
        );
        assert!(sys.log[0].contains(r#""name":"warren""#), "{}", sys.log[0]);
    }

    #[test]
    fn a_missing_table_reads_as_absent() {
        let mut sys = Recorder::default();
        assert_eq!(read(&sys).unwrap(), None);
        sys.reads.insert(
            "nft -j list table ip warren".into(),
            r#"{"nftables":[{"table":{"family":"ip","name":"warren","handle":3}}]}"#.into(),
        );
        assert!(read(&sys).unwrap().is_some());
    }
}
