//! Why an image could not become a tensor; every variant names the file.

use std::path::PathBuf;

/// An image that could not be read, decoded or resized.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened or read.
    #[error("cannot read image '{path}': {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an image format we can decode (or are truncated).
    #[error("cannot decode image '{path}': {reason}")]
    Decode { path: PathBuf, reason: String },
    /// The image is larger than the decode limit; decoding it would take
    /// gigabytes for a 224-pixel network input.
    #[error("image '{path}' is {width} x {height} pixels ({megapixels:.1} MP), above the limit of {limit_megapixels} MP")]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        megapixels: f64,
        limit_megapixels: u64,
    },
    /// The file is larger than any image within the pixel limit can be;
    /// it is not read into memory.
    #[error("image file '{path}' is larger than {limit_megabytes} MB, more than an image of at most {limit_megapixels} MP takes")]
    FileTooLarge {
        path: PathBuf,
        limit_megabytes: u64,
        limit_megapixels: u64,
    },
    /// The resize step failed (zero-sized image or crop).
    #[error("cannot resize image '{path}': {reason}")]
    Resize { path: PathBuf, reason: String },
}
