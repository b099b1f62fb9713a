//! FOUNDATION STUB (issue 16).
