//! `Diagnostic`: what is wrong, and where in a user's file.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem in a user's file, displayed as `file:line:col: message`.
///
/// `line` and `col` are 1-based (`col` counts characters). A problem about a whole file
/// (a missing file, a role that names no state file) has `line == 0` and displays as
/// `file: message`; a known line with an unknown column has `col == 0`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Path relative to the repository root, e.g. `states/coins/worker.yaml`.
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, line: usize, col: usize, message: impl Into<String>) -> Self {
        Diagnostic { file: file.into(), line, col, message: message.into() }
    }

    /// A problem about a file as a whole.
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic::new(file, 0, 0, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (line, 0) => write!(f, "{}:{line}: {}", self.file, self.message),
            (line, col) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// `Ok` when nothing was reported, else every diagnostic.
pub(crate) fn finish<T>(value: T, diags: Vec<Diagnostic>) -> Result<T, Vec<Diagnostic>> {
    if diags.is_empty() { Ok(value) } else { Err(diags) }
}

/// Lowercase the first letter of a third-party message ("Unexpected end" → "unexpected
/// end"), unless it starts an acronym ("YAML").
pub(crate) fn lowercase_first(message: &str) -> String {
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            first.to_lowercase().chain(message.chars().skip(1)).collect()
        }
        _ => message.to_string(),
    }
}

/// Run third-party parsing or rendering code on user input, turning a panic (a bug in that
/// code, never expected) into a diagnostic instead of taking the master or minion down.
pub(crate) fn guard<T>(file: &str, what: &str, f: impl FnOnce() -> T) -> Result<T, Diagnostic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| Diagnostic::whole_file(file, format!("internal error while {what} this file")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_position_when_known() {
        assert_eq!(Diagnostic::new("a.yaml", 3, 7, "bad").to_string(), "a.yaml:3:7: bad");
        assert_eq!(Diagnostic::new("a.yaml", 3, 0, "bad").to_string(), "a.yaml:3: bad");
        assert_eq!(Diagnostic::whole_file("a.yaml", "bad").to_string(), "a.yaml: bad");
    }

    #[test]
    fn lowercases_words_not_acronyms() {
        assert_eq!(lowercase_first("Field `x` is not defined"), "field `x` is not defined");
        assert_eq!(lowercase_first("YAML error"), "YAML error");
        assert_eq!(lowercase_first("`+` requires"), "`+` requires");
        assert_eq!(lowercase_first(""), "");
    }
}
