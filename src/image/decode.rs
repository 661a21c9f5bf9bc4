//! Decode any common image file into 8-bit RGB.
//!
//! Grey, grey+alpha, RGBA, CMYK JPEG and 16-bit images are all converted to
//! 8-bit RGB the way Pillow's `convert("RGB")` does (alpha is dropped, 16-bit
//! values are scaled to 8 bits), so results match a Pillow reference; JPEGs
//! are decoded by libjpeg like Pillow does (see `jpeg`). The header is read
//! first so that a huge image is refused before its pixels are allocated.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use ::image::{ImageReader, RgbImage};

use super::jpeg::{decode_jpeg, JpegOutcome};
use super::ImageError;

/// Images above this many pixels are refused (64 MP: a 8000 x 8000 photo).
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// Reads and decodes `path` into an 8-bit RGB image, refusing images with
/// more than `max_pixels` pixels.
pub fn load_rgb(path: &Path, max_pixels: u64) -> Result<RgbImage, ImageError> {
    let open = || -> Result<ImageReader<BufReader<File>>, ImageError> {
        let file = File::open(path).map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ImageReader::new(BufReader::new(file))
            .with_guessed_format()
            .map_err(|source| ImageError::Read {
                path: path.to_path_buf(),
                source,
            })
    };
    let decode_error = |reason: String| ImageError::Decode {
        path: path.to_path_buf(),
        reason,
    };

    let reader = open()?;
    let format = reader.format();
    if format.is_none() {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        return Err(decode_error(if len == 0 {
            "the file is empty (0 bytes)".to_string()
        } else {
            "unknown image format".to_string()
        }));
    }
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| decode_error(e.to_string()))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            megapixels: pixels as f64 / 1e6,
            limit_megapixels: max_pixels / 1_000_000,
        });
    }
    if pixels == 0 {
        return Err(decode_error(format!(
            "image has no pixels ({width} x {height})"
        )));
    }

    if format == Some(::image::ImageFormat::Jpeg) {
        let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        match decode_jpeg(&bytes) {
            JpegOutcome::Rgb(img) => return Ok(img),
            JpegOutcome::Broken(reason) => return Err(decode_error(reason)),
            JpegOutcome::Unsupported => {}
        }
    }

    let mut reader = open()?;
    let mut limits = ::image::Limits::default();
    // Room for the decoded image at 16 bits per channel with alpha.
    limits.max_alloc = Some(pixels.saturating_mul(8).max(64 << 20));
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| decode_error(e.to_string()))?;
    Ok(decoded.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::{ImageBuffer, Luma, Rgba};

    /// A file path in the temporary folder, removed when dropped (tests run
    /// in parallel in one process, so each file has its own name).
    struct TempFile(std::path::PathBuf);

    impl std::ops::Deref for TempFile {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl AsRef<std::path::Path> for TempFile {
        fn as_ref(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn tmp(name: &str) -> TempFile {
        let file = format!("layercorr-decode-{}-{name}", std::process::id());
        TempFile(std::env::temp_dir().join(file))
    }

    #[test]
    fn grey_image_becomes_three_equal_channels() {
        let path = tmp("grey.png");
        ImageBuffer::from_fn(5, 4, |x, y| Luma([(x * 40 + y) as u8]))
            .save(&path)
            .unwrap();
        let rgb = load_rgb(&path, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(rgb.dimensions(), (5, 4));
        let p = rgb.get_pixel(3, 2);
        assert_eq!(p[0], 122);
        assert_eq!(p[0], p[1]);
        assert_eq!(p[1], p[2]);
    }

    #[test]
    fn alpha_is_dropped() {
        let path = tmp("rgba.png");
        ImageBuffer::from_fn(2, 2, |_, _| Rgba([10u8, 20, 30, 0]))
            .save(&path)
            .unwrap();
        let rgb = load_rgb(&path, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(rgb.get_pixel(1, 1).0, [10, 20, 30]);
    }

    #[test]
    fn empty_missing_and_huge_files_are_named_errors() {
        let empty = tmp("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        let err = load_rgb(&empty, DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("empty.jpg") && err.contains("0 bytes"),
            "{err}"
        );

        let missing = tmp("missing.jpg");
        let err = load_rgb(&missing, DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.jpg"), "{err}");

        let big = tmp("big.png");
        ImageBuffer::from_fn(100, 100, |_, _| Luma([0u8]))
            .save(&big)
            .unwrap();
        let err = load_rgb(&big, 5_000).unwrap_err().to_string();
        assert!(err.contains("100 x 100"), "{err}");
    }
}
