//! `warren-controller schema`: print the JSON Schema of warren.yaml (the one
//! committed as `docs/warren.schema.json`).

use super::Outcome;
use warren_host::outln;

pub fn run() -> Outcome {
    outln!("{}", serde_json::to_string_pretty(&warren_model::json_schema())?);
    Ok(())
}
