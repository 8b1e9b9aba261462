//! Problems found in a config file, and how they are shown to the user.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

/// One problem, located at `file:line:column` (both 1-based, column in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem of one file, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects problems as byte spans while the document is read; shared by every
/// table reader, hence the interior mutability.
#[derive(Default)]
pub(super) struct Problems(RefCell<Vec<(usize, String)>>);

impl Problems {
    pub(super) fn report(&self, span: Range<usize>, message: impl Into<String>) {
        self.0.borrow_mut().push((span.start, message.into()));
    }

    /// `Ok(value)` when nothing was reported, else every problem in source order.
    pub(super) fn into_result<T>(
        self,
        value: T,
        source: &str,
        file: &str,
    ) -> Result<T, Diagnostics> {
        let mut problems = self.0.into_inner();
        if problems.is_empty() {
            return Ok(value);
        }
        problems.sort_by_key(|(offset, _)| *offset); // stable: same-place problems keep their order
        let diagnostics = problems.into_iter().map(|(offset, message)| {
            let (line, column) = line_column(source, offset);
            Diagnostic {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        });
        Err(Diagnostics(diagnostics.collect()))
    }
}

/// 1-based line and character column of a byte offset.
pub(super) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}
