//! RouterOS's error replies: `{"error":<status>,"message":<reason>,"detail":<text>}`.

use serde_json::{json, Value};

/// A refused request, as the REST API reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}{}", reason(*.status), .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct RosError {
    /// HTTP status (`error` in the body).
    pub status: u16,
    /// `detail`, absent on 404 and 401.
    pub detail: Option<String>,
}

impl RosError {
    /// 400 Bad Request with a detail, the usual refusal.
    pub fn bad(detail: impl Into<String>) -> Self {
        RosError {
            status: 400,
            detail: Some(detail.into()),
        }
    }
    /// 404 `{"error":404,"message":"Not Found"}` (no detail).
    pub fn not_found() -> Self {
        RosError {
            status: 404,
            detail: None,
        }
    }
    /// 401 `{"error":401,"message":"Unauthorized"}`.
    pub fn unauthorized() -> Self {
        RosError {
            status: 401,
            detail: None,
        }
    }
    /// `unknown parameter <name>`.
    pub fn unknown_parameter(name: &str) -> Self {
        Self::bad(format!("unknown parameter {name}"))
    }
    /// `input does not match any value of <field>` (a hard reference missed).
    pub fn no_match(field: &str) -> Self {
        Self::bad(format!("input does not match any value of {field}"))
    }
    /// `no such command or directory (<name>)`.
    pub fn no_such(name: &str) -> Self {
        Self::bad(format!("no such command or directory ({name})"))
    }
    /// The JSON body RouterOS sends.
    pub fn body(&self) -> Value {
        let mut v = json!({"error": self.status, "message": reason(self.status)});
        if let (Some(d), Some(o)) = (&self.detail, v.as_object_mut()) {
            o.insert("detail".into(), Value::String(d.clone()));
        }
        v
    }
}

/// The reason phrase RouterOS puts in `message`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        406 => "Not Acceptable",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}
