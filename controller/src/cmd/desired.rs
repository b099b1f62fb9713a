//! Reading the desired state the way every command does: load and validate
//! `warren.yaml` (diagnostics on stderr), gather known WireGuard keys, and
//! compile. A command that meets invalid input gets [`Failure::Invalid`]
//! after the reasons are printed; it must not print them again.

use super::Failure;
use crate::source::{self, Source};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use warren_compiler::{compile, KeyBook};

/// Every host's plan, by host name.
pub type Plans = BTreeMap<String, warren_plan::Plan>;

/// Read and validate the desired state, printing every diagnostic.
pub fn load(path: &Path, rev: Option<&str>) -> Result<(Source, warren_model::Config), Failure> {
    let src = source::read(path, rev)?;
    let (cfg, diags) = warren_model::load_str(&src.text, &src.name);
    eprint!("{diags}");
    match cfg {
        Some(c) => Ok((src, c)),
        None => {
            let n = diags.iter().filter(|d| d.is_error()).count();
            eprintln!(
                "{}: {n} error{}; nothing compiled",
                src.name,
                if n == 1 { "" } else { "s" }
            );
            Err(Failure::Invalid)
        }
    }
}

/// Load, validate and compile with the keys pinned in the file plus those in
/// `keys` (a JSON file).
pub fn compiled(path: &Path, rev: Option<&str>, keys: Option<&Path>) -> Result<(Source, Plans), Failure> {
    let (src, cfg) = load(path, rev)?;
    let kb = keybook(&cfg, keys)?;
    let plans = compile_reported(&src, &cfg, &kb)?;
    Ok((src, plans))
}

/// Compile, printing why not.
pub fn compile_reported(src: &Source, cfg: &warren_model::Config, kb: &KeyBook) -> Result<Plans, Failure> {
    compile(cfg, kb).map_err(|e| {
        eprintln!("{}: {e}", src.name);
        Failure::Invalid
    })
}

/// The keys pinned in the desired state, plus those in `file`:
/// `{"host": {"interface": "key"}}`.
pub fn keybook(cfg: &warren_model::Config, file: Option<&Path>) -> Result<KeyBook> {
    let mut kb = KeyBook::pinned(cfg);
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let m: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected {{\"host\": {{\"interface\": \"key\"}}}}",
                    f.display()
                )
            })?;
        for (h, ifs) in m {
            for (i, k) in ifs {
                kb.insert(&h, &i, &k);
            }
        }
    }
    Ok(kb)
}
