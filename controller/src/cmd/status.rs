//! `warren-controller status`: per host, desired and applied commit and its
//! state (in sync, pending, drifted, failed, unreachable), read from the
//! service's typed `status.json` snapshot (never from its database, which the
//! running service holds locked).

use super::Outcome;
use crate::serve::status::StatusView;
use std::path::Path;
use warren_host::cli::Format;
use warren_host::{out, outln};

pub fn run(state_dir: &Path, format: Format) -> Outcome {
    let view = StatusView::load(state_dir)?;
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&view)?),
        Format::Text => out!("{}", view.render_text(warren_host::unix_now())),
    }
    Ok(())
}
