//! The one error type of the kernels.
//!
//! Every check on user data ends here instead of in a panic: the kernels run
//! inside a DuckDB host, where a panic that escapes a callback kills the
//! user's process. Variants carry *indices* (row of the activation matrix,
//! index of a matrix in a list), never keys or layer names, because the
//! kernels do not know them; the binding layer maps an index back to the
//! user's key with [`KernelError::row`] / [`KernelError::matrix_index`] and
//! may rewrite the message. The `Display` text is still complete on its own
//! ("pearson: row 3 is constant (zero variance)") so that an unmapped error
//! is readable.
//!
//! The enum is `#[non_exhaustive]` so that adding a check later is not a
//! breaking change for the binding layer.

use thiserror::Error;

/// Result alias used by every kernel.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// What went wrong in a kernel, with the index of the offending row or matrix.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum KernelError {
    /// Fewer rows (keys, observations) than the method needs.
    #[error("{what}: need at least {min} rows, got {n}")]
    TooFewRows {
        /// The operation that was asked for (a method name or a function).
        what: &'static str,
        /// Rows given.
        n: usize,
        /// Rows needed.
        min: usize,
    },

    /// The rows have no columns at all.
    #[error("{what}: rows have no columns (d = 0)")]
    NoColumns {
        /// The operation that was asked for.
        what: &'static str,
    },

    /// A row pushed into a [`crate::rows::RowMatrix`] has the wrong length.
    #[error("row {row} has {got} values, expected {expected} like the rows before it")]
    RowLength {
        /// Index of the rejected row (the number of rows already stored).
        row: usize,
        /// Length of the rows already stored.
        expected: usize,
        /// Length of the rejected row.
        got: usize,
    },

    /// A flat buffer does not have the length its declared shape needs.
    #[error("{what}: buffer has {got} values, expected {expected}")]
    BadShape {
        /// Which buffer.
        what: &'static str,
        /// `n * d` (or `n * n`).
        expected: usize,
        /// Length of the buffer.
        got: usize,
    },

    /// Reading or writing a spill file failed (disk full, temp folder not
    /// writable).
    #[error("spill file in {dir}: {reason}")]
    Spill {
        /// The folder the spill file lives in.
        dir: String,
        /// The operating system's message.
        reason: String,
    },

    /// An input value is NaN or infinite.
    #[error("row {row} has a non-finite value ({value}) at column {col}")]
    NonFinite {
        /// Row of the bad value.
        row: usize,
        /// Column of the bad value.
        col: usize,
        /// The value itself (NaN, inf or -inf).
        value: f32,
    },

    /// Values of a row are so large that their products overflow `f32`.
    #[error("row {row} has values too large to multiply in float32 (|x| above about 1e19)")]
    Overflow {
        /// The row whose squared norm overflowed.
        row: usize,
    },

    /// A row has zero variance (pearson, spearman) or zero norm (cosine), so
    /// its correlation with anything is undefined.
    #[error("{method}: row {row} {}", constant_reason(method))]
    ConstantRow {
        /// Index of the row.
        row: usize,
        /// Method name, as in [`crate::method::CorrMethod::name`].
        method: &'static str,
    },

    /// A working buffer could not be allocated (the input is too large for
    /// this machine's memory), or its size does not even fit in a `usize`.
    /// Returned instead of letting the allocator abort the host.
    #[error("cannot allocate {bytes} bytes for {what}")]
    TooLarge {
        /// Which buffer.
        what: &'static str,
        /// Bytes requested (`u64::MAX` if the size itself overflowed).
        bytes: u64,
    },

    /// An activation with no values: nothing to correlate.
    #[error("row {row} is an empty activation (0 values)")]
    EmptyRow {
        /// Index of the row.
        row: usize,
    },

    /// A method name that is not one of the valid ones.
    #[error("unknown {kind} method '{got}'; valid methods: {valid}")]
    UnknownMethod {
        /// Which family of methods ("correlation", "comparison").
        kind: &'static str,
        /// The rejected name, as given.
        got: String,
        /// Valid names, comma separated.
        valid: String,
    },

    /// No matrices were given to compare.
    #[error("{what}: no matrices given")]
    NoMatrices {
        /// The operation that was asked for.
        what: &'static str,
    },

    /// A matrix in a list does not have `n * n` values.
    #[error("matrix {index} has {got} values, expected {expected} ({n} x {n})")]
    MatrixLength {
        /// Index of the matrix in the list (0 = first argument).
        index: usize,
        /// Matrix size that was asked for.
        n: usize,
        /// `n * n`.
        expected: usize,
        /// Length of the matrix buffer.
        got: usize,
    },

    /// A matrix entry is NaN or infinite.
    #[error("matrix {index} has a non-finite value ({value}) at [{row}][{col}]")]
    NonFiniteMatrix {
        /// Index of the matrix in the list.
        index: usize,
        /// Row of the bad entry.
        row: usize,
        /// Column of the bad entry.
        col: usize,
        /// The entry.
        value: f32,
    },

    /// A matrix whose compared entries are all equal (zero variance after
    /// centring), so its similarity with anything is undefined.
    #[error("{method}: matrix {index} is constant (zero variance after centring)")]
    ConstantMatrix {
        /// Index of the matrix in the list.
        index: usize,
        /// Method name, as in [`crate::method::CompareMethod::name`].
        method: &'static str,
    },

    /// A matrix made by a `layer_corr` method that the comparison method
    /// cannot use (e.g. `procrustes` on pearson matrices).
    #[error("{method}: matrix {index} was made by layer_corr method '{kind}', but {method} needs {accepted}")]
    WrongMatrixKind {
        /// Index of the matrix in the list.
        index: usize,
        /// Comparison method name.
        method: &'static str,
        /// The `layer_corr` method recorded with the matrix.
        kind: &'static str,
        /// What the method accepts, in words.
        accepted: &'static str,
    },

    /// A numeric argument outside its valid range.
    #[error("{what}: {name} must be {valid}, got {got}")]
    BadArgument {
        /// The operation that was asked for.
        what: &'static str,
        /// The argument's name.
        name: &'static str,
        /// The rejected value, as text.
        got: String,
        /// The valid range, in words.
        valid: &'static str,
    },

    /// No resample gave a defined value (every resampled matrix was
    /// constant), so there is no interval.
    #[error("{what}: none of the {tried} resamples gave a defined value (resampled matrices were constant); use more images")]
    NoValidResample {
        /// The operation that was asked for.
        what: &'static str,
        /// Resamples drawn.
        tried: usize,
    },

    /// The thread that took a group's products behind the host's scan
    /// stopped without a result (it panicked).
    #[error("the products of a group stopped on their thread: {reason}")]
    Background {
        /// What the thread left behind.
        reason: String,
    },
}

fn constant_reason(method: &str) -> &'static str {
    if method == "cosine" {
        "has zero norm (all values are 0)"
    } else {
        "is constant (zero variance)"
    }
}

impl KernelError {
    /// The row (of the activation matrix, or of the matrix given to
    /// clustering) that the error is about, if any. The binding layer maps it
    /// to the user's key.
    pub fn row(&self) -> Option<usize> {
        match self {
            KernelError::RowLength { row, .. }
            | KernelError::NonFinite { row, .. }
            | KernelError::Overflow { row }
            | KernelError::EmptyRow { row }
            | KernelError::ConstantRow { row, .. } => Some(*row),
            KernelError::NonFiniteMatrix { row, .. } => Some(*row),
            _ => None,
        }
    }

    /// The same error about row `to` instead (after rows were reordered).
    pub fn with_row(mut self, to: usize) -> Self {
        match &mut self {
            KernelError::RowLength { row, .. }
            | KernelError::NonFinite { row, .. }
            | KernelError::Overflow { row }
            | KernelError::EmptyRow { row }
            | KernelError::ConstantRow { row, .. }
            | KernelError::NonFiniteMatrix { row, .. } => *row = to,
            _ => {}
        }
        self
    }

    /// The index of the matrix (in a list of matrices) that the error is
    /// about, if any. The binding layer maps it to the layer name.
    pub fn matrix_index(&self) -> Option<usize> {
        match self {
            KernelError::MatrixLength { index, .. }
            | KernelError::NonFiniteMatrix { index, .. }
            | KernelError::ConstantMatrix { index, .. }
            | KernelError::WrongMatrixKind { index, .. } => Some(*index),
            _ => None,
        }
    }
}
