//! Warren's desired-state model: schema v1 of `warren.yaml`, bounded YAML
//! loading, and validation with precise diagnostics (file, line, column, hint).
//!
//! This crate owns the meaning of the user's file. It is pure: no I/O, no
//! clock, no threads; callers hand it text and get back a resolved
//! [`model::Config`] or [`diag::Diagnostics`]. It must not compile plans, read
//! files or talk to hosts.

#![warn(missing_docs)]

pub mod diag;
pub mod load;
pub mod model;
pub use warren_plan::net;
pub mod schema;
pub mod sp;
pub mod validate;

pub use diag::{Diagnostic, Diagnostics, Pos, Severity};
pub use model::Config;
pub use validate::{load_str, validate, WG_OVERHEAD};

/// The JSON Schema of `warren.yaml`, generated from [`schema::Document`].
pub fn json_schema() -> serde_json::Value {
    let s = schemars::schema_for!(schema::Document);
    serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
}
