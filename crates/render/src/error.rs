//! The one error type of the crate.
//!
//! Every renderer validates its input before it draws a pixel, so a caller
//! (the SQL binding, a test, a notebook helper) gets either a complete PNG or
//! one of these errors, never a half-drawn figure or a panic. Messages have
//! the form `"function: what was wrong (value)"` because the SQL layer shows
//! them to users verbatim. [`RenderError`] is an opaque struct so that new
//! failure cases do not break callers; [`ErrorKind`] lets code branch on the
//! broad class without parsing the message.
//!
//! Non-finite matrix entries are *not* errors: NaN is drawn grey and ±inf is
//! clamped to the ends of the colour scale.

use std::fmt;

/// Result alias used throughout the crate.
pub type RenderResult<T> = Result<T, RenderError>;

/// The broad class of a [`RenderError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A matrix with `n = 0`, a grid with no panels, or a plot with no series.
    Empty,
    /// A value buffer whose length does not match its declared shape, or
    /// panels / series whose shapes disagree.
    SizeMismatch,
    /// A label list whose length does not match the matrix or the x axis.
    LabelCountMismatch,
    /// An invalid option: reversed or non-finite value range, zero sizes.
    InvalidOption,
    /// A line plot's band whose lower end is above its upper end.
    InvalidBand,
    /// The requested figure would exceed the maximum canvas size.
    TooLarge,
    /// The PNG encoder failed.
    Encode,
    /// A key order that is not a permutation of the matrix's keys: a key
    /// missing from the matrix, a key given twice, or the wrong count.
    InvalidOrder,
}

/// Why a figure could not be rendered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    kind: ErrorKind,
    message: String,
}

impl RenderError {
    /// Builds an error of `kind` from a message of the form
    /// `"function: what was wrong (value)"`.
    pub(crate) fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        RenderError {
            kind,
            message: message.to_string(),
        }
    }

    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Checks a square matrix buffer: `n > 0` and `len == n * n`.
pub(crate) fn check_square(function: &str, len: usize, n: usize) -> RenderResult<()> {
    if n == 0 {
        return Err(RenderError::new(
            ErrorKind::Empty,
            format!("{function}: the matrix is empty (n = 0)"),
        ));
    }
    match n.checked_mul(n) {
        Some(expected) if expected == len => Ok(()),
        _ => Err(RenderError::new(
            ErrorKind::SizeMismatch,
            format!(
                "{function}: {len} values do not form a {n} x {n} matrix (expected {})",
                n.saturating_mul(n)
            ),
        )),
    }
}

/// Checks that `labels` (if any) has one entry per matrix row.
pub(crate) fn check_labels(
    function: &str,
    labels: Option<&[String]>,
    n: usize,
) -> RenderResult<()> {
    match labels {
        Some(l) if l.len() != n => Err(RenderError::new(
            ErrorKind::LabelCountMismatch,
            format!(
                "{function}: {} labels for a {n} x {n} matrix (expected {n})",
                l.len()
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_checks() {
        assert!(check_square("f", 9, 3).is_ok());
        let e = check_square("f", 0, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Empty);
        assert!(e.to_string().starts_with("f: "));
        let e = check_square("f", 8, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeMismatch);
        assert!(e.to_string().contains("8 values"));
        // n * n overflows: a mismatch, not a panic.
        let e = check_square("f", 1, usize::MAX).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeMismatch);
    }

    #[test]
    fn label_checks() {
        let labels = vec!["a".to_string(), "b".to_string()];
        assert!(check_labels("f", Some(&labels), 2).is_ok());
        assert!(check_labels("f", None, 5).is_ok());
        let e = check_labels("f", Some(&labels), 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LabelCountMismatch);
        assert_eq!(e.to_string(), "f: 2 labels for a 3 x 3 matrix (expected 3)");
    }
}
