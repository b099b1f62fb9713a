//! Reading untrusted YAML with hard limits.
//!
//! Desired state arrives through pull requests, so a file may be hostile. The
//! limits below bound size, nesting, node count and alias expansion; a file
//! that exceeds them is rejected with a `yaml-limit` diagnostic before any
//! large allocation happens. A real `warren.yaml` is a few kilobytes.

use crate::diag::{Diagnostic, Pos};
use crate::schema::Document;

/// Largest accepted file.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Deepest accepted nesting (the schema itself needs 5).
pub const MAX_DEPTH: usize = 24;
/// Most YAML nodes (scalars and collections), after alias expansion.
pub const MAX_NODES: usize = 100_000;
/// Most aliases (`*name`) in a file.
pub const MAX_ALIASES: usize = 256;

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_BYTES);
    budget.max_events = 4 * MAX_NODES;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ALIASES;
    budget.max_depth = MAX_DEPTH;
    budget.max_documents = 1;
    budget.max_nodes = MAX_NODES;
    budget.max_total_scalar_bytes = MAX_BYTES;
    budget.max_merge_keys = 64;
    budget.max_recorded_anchor_events = MAX_NODES / 10;
    budget.max_recorded_anchor_bytes = MAX_BYTES;
    budget.max_inclusion_depth = 0;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_NODES;
    alias_limits.max_replay_stack_depth = 8;
    alias_limits.max_alias_expansions_per_anchor = 64;
    serde_saphyr::options! {
        budget: Some(budget),
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        strict_booleans: true,
        alias_limits: alias_limits,
    }
}

/// Parse `text` as a schema v1 document. `file` is used in diagnostics only.
pub fn parse_document(text: &str, file: &str) -> Result<Document, Box<Diagnostic>> {
    if text.len() > MAX_BYTES {
        return Err(Box::new(
            Diagnostic::error(
                "yaml-limit",
                Pos::UNKNOWN,
                format!("file is {} bytes; the limit is {MAX_BYTES}", text.len()),
            )
            .hint("a warren.yaml is a few kilobytes; is this the right file?")
            .in_file(file),
        ));
    }
    // First a schema-blind pass into a generic value: it walks every node and
    // expands every alias, so the limits hold wherever a bomb sits, even where
    // the typed pass would stop early. It costs microseconds on a real file.
    serde_saphyr::from_str_with_options::<serde_json::Value>(text, options())
        .map_err(|e| Box::new(yaml_error(&e).in_file(file)))?;
    serde_saphyr::from_str_with_options::<Document>(text, options())
        .map_err(|e| Box::new(yaml_error(&e).in_file(file)))
}

fn yaml_error(e: &serde_saphyr::Error) -> Diagnostic {
    use serde_saphyr::Error as E;
    let inner = e.without_snippet();
    let pos = inner
        .location()
        .map(|l| {
            Pos::new(
                u32::try_from(l.line()).unwrap_or(u32::MAX),
                u32::try_from(l.column()).unwrap_or(u32::MAX),
            )
        })
        .unwrap_or(Pos::UNKNOWN);
    let message = strip_location(&inner.to_string());
    if let Some(limit) = limit_message(&message) {
        return Diagnostic::error("yaml-limit", pos, limit)
            .hint("the file exceeds Warren's limits on size, nesting or aliases (docs/reference.md)");
    }
    if is_type_error(&message) {
        return Diagnostic::error("bad-value", pos, message)
            .hint("this key takes another type of value; docs/reference.md gives each key's type");
    }
    let (code, hint) = match inner {
        E::SerdeUnknownField { .. } => (
            "unknown-key",
            Some("check the spelling; docs/reference.md lists every key"),
        ),
        E::SerdeMissingField { .. } => ("missing-key", None),
        E::SerdeUnknownVariant { .. } | E::SerdeInvalidType { .. } | E::SerdeInvalidValue { .. } => {
            ("bad-value", None)
        }
        E::DuplicateMappingKey { .. } => ("duplicate-key", Some("each key may appear once in a mapping")),
        _ => ("yaml-syntax", None),
    };
    let mut d = Diagnostic::error(code, pos, message);
    if let Some(h) = hint {
        d = d.hint(h);
    }
    d
}

/// The parser reports a value of the wrong type in its own words; these are
/// bad values, not broken YAML. ("invalid trailing content…" stays syntax.)
fn is_type_error(msg: &str) -> bool {
    const PREFIXES: [&str; 9] = [
        "invalid u",
        "invalid i",
        "invalid f",
        "invalid boolean",
        "expected sequence start",
        "expected mapping start",
        "expected string scalar",
        "expected a ",
        "expected an ",
    ];
    PREFIXES.iter().any(|p| msg.starts_with(p))
}

/// serde-saphyr reports a breached budget in its own terms; say it in ours.
fn limit_message(msg: &str) -> Option<String> {
    if msg.starts_with("alias expansion limit exceeded") {
        return Some("an anchor is used by more than 64 aliases".to_string());
    }
    if msg.starts_with("recursion limit exceeded") {
        return Some(format!("nesting is deeper than {MAX_DEPTH} levels"));
    }
    let rest = msg.strip_prefix("budget breached: ").or_else(|| {
        (msg.contains("alias") && (msg.contains("limit") || msg.contains("exceeded"))).then_some(msg)
    })?;
    let what = rest.split([' ', '{']).next().unwrap_or(rest);
    Some(match what {
        "Depth" => format!("nesting is deeper than {MAX_DEPTH} levels"),
        "Aliases" | "Anchors" => format!("more than {MAX_ALIASES} aliases or anchors"),
        "Nodes" | "Events" => format!("more than {MAX_NODES} YAML nodes"),
        "RecordedAnchorEvents" | "RecordedAnchorBytes" => {
            format!(
                "aliases expand to more than {} nodes (an alias bomb?)",
                MAX_NODES / 10
            )
        }
        "Documents" => "more than one YAML document".to_string(),
        "TotalScalarBytes" => format!("more than {MAX_BYTES} bytes of text"),
        _ => format!("YAML limit exceeded ({})", what.trim_end_matches(':')),
    })
}

/// serde-saphyr appends " at line L column C"; we print the position ourselves.
fn strip_location(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // Advice addressed to programmers using the library, not to our users.
    match first.find(", set DuplicateKeyPolicy") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}
