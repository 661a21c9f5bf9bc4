//! The binding's one error type, and the one place where an engine or
//! kernel error that speaks of positions (row 3, matrix 2) is made to
//! speak of the user's keys and layer names.
//!
//! The trampolines put the SQL function's name in front of the message;
//! nothing else adds it.

use layercorr_engine::files::FileError;
use layercorr_engine::image::ImageError;
use layercorr_engine::model::ModelError;
use layercorr_engine::pipeline::PipelineError;
use layercorr_kernels::KernelError;
use layercorr_render::error::RenderError;

/// Result of everything the binding does.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a SQL function call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: the message names the bad value.
    #[error("{0}")]
    Invalid(String),
    /// An argument's problem, with the argument named.
    #[error("{name}: {source}")]
    Argument {
        /// The argument, e.g. `matrix_a` or `activation`.
        name: String,
        /// What was wrong with it.
        source: Box<Error>,
    },
    /// A kernel refused the data (rows and matrices already named where
    /// the binding knows their keys).
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The kernel error about row `row`, whose key is `key`.
    #[error("{source} (row {row} is key '{key}')")]
    AtKey {
        /// The kernel's error.
        source: KernelError,
        /// The row in arrival order.
        row: usize,
        /// That row's key.
        key: String,
    },
    /// The kernel error about matrix `index`, whose name is `name`.
    #[error("{source} (matrix {index} is '{name}')")]
    AtMatrix {
        /// The kernel's error.
        source: KernelError,
        /// The matrix's position.
        index: usize,
        /// Its layer (or argument) name.
        name: String,
    },
    /// Loading or running a model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Decoding or preprocessing an image.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A forward pass over many images.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Reading or writing a file through DuckDB's file system.
    #[error(transparent)]
    File(#[from] FileError),
    /// Drawing a picture.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The host refused (memory limit, a C API call that failed).
    #[error("{0}")]
    Host(String),
    /// A bug in layercorr (a caught panic, a vector of an unexpected type).
    #[error("layercorr internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Bad input, described by `message`.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    /// A bug in layercorr.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// This error, said of argument `name`.
    pub fn of_argument(self, name: impl Into<String>) -> Error {
        Error::Argument {
            name: name.into(),
            source: Box::new(self),
        }
    }

    /// A kernel error with its row (arrival order) named by `keys`.
    pub fn at_key(e: KernelError, keys: &[String]) -> Error {
        match e.row().and_then(|row| keys.get(row).map(|k| (row, k))) {
            Some((row, key)) => Error::AtKey {
                source: e,
                row,
                key: key.clone(),
            },
            None => Error::Kernel(e),
        }
    }

    /// A kernel error with its matrix named by `names`.
    pub fn at_matrix(e: KernelError, names: &[String]) -> Error {
        match e
            .matrix_index()
            .and_then(|index| names.get(index).map(|n| (index, n)))
        {
            Some((index, name)) => Error::AtMatrix {
                source: e,
                index,
                name: name.clone(),
            },
            None => Error::Kernel(e),
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::Invalid(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::Invalid(message.to_string())
    }
}

impl From<Error> for String {
    fn from(error: Error) -> String {
        error.to_string()
    }
}

/// Adds the argument name to an error.
pub trait ArgumentContext<T> {
    /// On error, says which argument it was about.
    fn of_argument(self, name: &str) -> Result<T>;
}

impl<T, E: Into<Error>> ArgumentContext<T> for std::result::Result<T, E> {
    fn of_argument(self, name: &str) -> Result<T> {
        self.map_err(|e| e.into().of_argument(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_rows_are_named_by_key() {
        let e = KernelError::EmptyRow { row: 1 };
        let keys = ["a.jpg".to_string(), "b.jpg".to_string()];
        let text = Error::at_key(e.clone(), &keys).to_string();
        assert!(text.ends_with("(row 1 is key 'b.jpg')"), "{text}");
        assert_eq!(
            Error::at_key(e.clone(), &keys[..1]).to_string(),
            e.to_string()
        );
    }

    #[test]
    fn arguments_are_named_in_front() {
        let e: Result<()> = Err("element 2 of the list is NULL".into());
        assert_eq!(
            e.of_argument("activation").unwrap_err().to_string(),
            "activation: element 2 of the list is NULL"
        );
    }
}
