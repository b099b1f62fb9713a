//! Diagnostics: what is wrong, where (file, line, column), and a hint.

use std::fmt;

/// A 1-based position in a source file. `line == 0` means "unknown".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1; 0 when unknown.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl Pos {
    /// No position: the diagnostic is about the file as a whole.
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };
    /// The position at `line`, `column`.
    pub fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is refused: nothing is compiled or deployed.
    Error,
    /// Worth fixing, but the file still compiles.
    Warning,
}

/// One finding about the desired state. Errors make the input compile to nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable, documented identifier (see docs/lints.md), e.g. `forward-overlap`.
    pub code: &'static str,
    /// The file as named by the caller; empty renders as `<input>`.
    pub file: String,
    /// Where in `file`; [`Pos::UNKNOWN`] for the file as a whole.
    pub pos: Pos,
    /// What is wrong, on one line.
    pub message: String,
    /// Related places (e.g. the other side of an overlap), rendered as notes.
    pub notes: Vec<String>,
    /// How to fix it, when there is something specific to say.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error with no file, notes or hint yet.
    pub fn error(code: &'static str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            file: String::new(),
            pos,
            message: message.into(),
            notes: Vec::new(),
            hint: None,
        }
    }
    /// A warning with no file, notes or hint yet.
    pub fn warning(code: &'static str, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, pos, message)
        }
    }
    /// The same diagnostic with `hint`.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.with_hint(hint);
        self
    }
    /// A note pointing at another place in the same file.
    pub fn note_at(mut self, what: &str, pos: Pos) -> Self {
        self.with_note_at(what, pos);
        self
    }
    /// Sets the hint in place, for a diagnostic already pushed onto a list.
    pub fn with_hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }
    /// Adds a note in place; see [`Diagnostic::note_at`].
    pub fn with_note_at(&mut self, what: &str, pos: Pos) -> &mut Self {
        self.notes
            .push(format!("{what} at line {}, column {}", pos.line, pos.column));
        self
    }
    /// The same diagnostic, in `file`.
    pub fn in_file(mut self, file: &str) -> Self {
        self.file = file.to_string();
        self
    }
    /// Its severity is [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Renders as `file:line:col: error[code]: message`, then `  note:` and
    /// `  hint:` lines. This exact text is what the lint tests assert.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let file = if self.file.is_empty() {
            "<input>"
        } else {
            &self.file
        };
        if self.pos.line > 0 {
            write!(f, "{file}:{}:{}: ", self.pos.line, self.pos.column)?;
        } else {
            write!(f, "{file}: ")?;
        }
        write!(f, "{sev}[{}]: {}", self.code, self.message)?;
        for n in &self.notes {
            write!(f, "\n  note: {n}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every diagnostic, sorted by position so output is stable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one at the end (unsorted until [`Diagnostics::sorted`]).
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    /// At least one is an error: the file must not be compiled.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    /// Sorted by file, position, code and message; exact duplicates removed.
    pub fn sorted(mut self) -> Self {
        self.0
            .sort_by(|a, b| (&a.file, a.pos, a.code, &a.message).cmp(&(&b.file, b.pos, b.code, &b.message)));
        self.0.dedup();
        self
    }
    /// Each diagnostic, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// There are none, not even warnings.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
