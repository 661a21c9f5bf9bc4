//! Decode any common image file into 8-bit RGB.
//!
//! Grey, grey+alpha, RGBA, CMYK JPEG and 16-bit images are all converted to
//! 8-bit RGB the way Pillow's `convert("RGB")` does (alpha is dropped, 16-bit
//! values are scaled to 8 bits), so results match a Pillow reference; JPEGs
//! are decoded by libjpeg like Pillow does (see `jpeg`). The header is read
//! first so that a huge image is refused before its pixels are allocated.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

use ::image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use super::jpeg::{decode_jpeg, JpegOutcome};
use super::{Alpha, ImageError, Preprocessing};

/// Images above this many pixels are refused (64 MP: a 8000 x 8000 photo).
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// The largest file that can hold an image of at most `max_pixels` pixels:
/// uncompressed 16-bit RGBA (8 bytes a pixel) plus 16 MiB of metadata.
/// Anything larger is not read into memory.
pub fn max_file_bytes(max_pixels: u64) -> u64 {
    max_pixels.saturating_mul(8).saturating_add(16 << 20)
}

/// Reads and decodes `path` into an 8-bit RGB image, refusing images with
/// more than `max_pixels` pixels and files larger than
/// [`max_file_bytes`].
pub fn load_rgb(path: &Path, max_pixels: u64) -> Result<RgbImage, ImageError> {
    let read_error = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let limit = max_file_bytes(max_pixels);
    let file = File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    let mut bytes = Vec::with_capacity(len.min(limit) as usize);
    // `take` also bounds a file that grows while it is read.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(ImageError::FileTooLarge {
            path: path.to_path_buf(),
            limit_megabytes: limit >> 20,
            limit_megapixels: max_pixels / 1_000_000,
        });
    }
    decode_rgb(&bytes, path, max_pixels)
}

/// Decodes the image file held in `bytes` into an 8-bit RGB image,
/// refusing images with more than `max_pixels` pixels before their pixels
/// are allocated. `path` only names the image in errors.
pub fn decode_rgb(bytes: &[u8], path: &Path, max_pixels: u64) -> Result<RgbImage, ImageError> {
    let decode_error = |reason: String| ImageError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_error("the file is empty (0 bytes)".to_string()));
    }
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|source| ImageError::Read {
                path: path.to_path_buf(),
                source,
            })
    };

    let header = reader()?;
    let Some(format) = header.format() else {
        return Err(decode_error("unknown image format".to_string()));
    };
    let (width, height) = header
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

    if format == ::image::ImageFormat::Jpeg {
        match decode_jpeg(bytes, max_pixels) {
            JpegOutcome::Rgb(img) => return Ok(img),
            JpegOutcome::Broken(reason) => return Err(decode_error(reason)),
            JpegOutcome::Unsupported => {}
        }
    }

    let mut reader = reader()?;
    let mut limits = ::image::Limits::default();
    // Room for the decoded image at 16 bits per channel with alpha.
    limits.max_alloc = Some(pixels.saturating_mul(8).max(64 << 20));
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| decode_error(e.to_string()))?;
    Ok(decoded.into_rgb8())
}

/// Decodes `bytes` as [`decode_rgb`] does, then as `pre` asks: rotates
/// the image by its EXIF orientation (`pre.exif`, as Pillow's
/// `ImageOps.exif_transpose`) and blends a transparent image over
/// `Alpha::Composite`'s background (as Pillow's `alpha_composite` onto an
/// opaque background, then `convert("RGB")`).
pub fn decode_for(
    bytes: &[u8],
    path: &Path,
    max_pixels: u64,
    pre: &Preprocessing,
) -> Result<RgbImage, ImageError> {
    let rgb = match pre.alpha {
        Alpha::Composite(background) => match decode_rgba(bytes, path, max_pixels)? {
            Some(rgba) => composite(&rgba, background),
            None => decode_rgb(bytes, path, max_pixels)?,
        },
        Alpha::Drop => decode_rgb(bytes, path, max_pixels)?,
    };
    if !pre.exif {
        return Ok(rgb);
    }
    let orientation = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_decoder().ok())
        .and_then(|mut d| d.orientation().ok())
        .unwrap_or(::image::metadata::Orientation::NoTransforms);
    if orientation == ::image::metadata::Orientation::NoTransforms {
        return Ok(rgb);
    }
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// The image as 8-bit RGBA when it has an alpha channel (never a JPEG),
/// else `None`.
fn decode_rgba(
    bytes: &[u8],
    path: &Path,
    max_pixels: u64,
) -> Result<Option<::image::RgbaImage>, ImageError> {
    let decode_error = |reason: String| ImageError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let Ok(reader) = ImageReader::new(Cursor::new(bytes)).with_guessed_format() else {
        return Ok(None);
    };
    if reader.format() == Some(::image::ImageFormat::Jpeg) {
        return Ok(None);
    }
    // The size checks and errors of `decode_rgb` come first.
    decode_rgb(bytes, path, max_pixels)?;
    let mut reader = reader;
    let mut limits = ::image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 << 20));
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| decode_error(e.to_string()))?;
    if !decoded.color().has_alpha() {
        return Ok(None);
    }
    Ok(Some(decoded.into_rgba8()))
}

/// `rgba` over an opaque `background`, rounded to the nearest level.
fn composite(rgba: &::image::RgbaImage, background: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u32::from(p[3]);
        let mix = |c: usize| {
            ((u32::from(p[c]) * a + u32::from(background[c]) * (255 - a) + 127) / 255) as u8
        };
        ::image::Rgb([mix(0), mix(1), mix(2)])
    })
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

        let huge = tmp("huge.png");
        std::fs::write(&huge, vec![0u8; (max_file_bytes(1_000) + 1) as usize]).unwrap();
        let err = load_rgb(&huge, 1_000).unwrap_err().to_string();
        assert!(err.contains("huge.png") && err.contains("16 MB"), "{err}");
    }

    /// `img` encoded in `format`, in memory.
    fn encoded(img: &RgbImage, format: ::image::ImageFormat) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn decodes_from_bytes_with_named_errors() {
        let path = Path::new("mem/photo.png");
        let img = RgbImage::from_fn(7, 5, |x, y| ::image::Rgb([x as u8, y as u8, 9]));
        let png = encoded(&img, ::image::ImageFormat::Png);
        assert_eq!(decode_rgb(&png, path, DEFAULT_MAX_PIXELS).unwrap(), img);

        let err = decode_rgb(b"", path, DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cannot decode image 'mem/photo.png': the file is empty (0 bytes)"
        );
        let err = decode_rgb(b"not an image at all", path, DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cannot decode image 'mem/photo.png': unknown image format"
        );
        let err = decode_rgb(&png, path, 20).unwrap_err().to_string();
        assert!(err.contains("7 x 5") && err.contains("photo.png"), "{err}");
        let err = decode_rgb(&png[..png.len() / 2], path, DEFAULT_MAX_PIXELS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot decode image 'mem/photo.png'"), "{err}");
    }

    #[test]
    fn extreme_shapes_decode_and_preprocess() {
        use crate::image::{preprocess, Preprocessing};
        use ::image::ImageFormat::{Gif, Jpeg, Png};
        // GIF and JPEG sides stop at 65,535 pixels; PNG goes further.
        let cases = [
            (Png, 1, 2_000_000),
            (Png, 2_000_000, 1),
            (Gif, 65_535, 1),
            (Gif, 1, 65_535),
            (Jpeg, 65_000, 1),
            (Jpeg, 1, 65_000),
        ];
        for (format, w, h) in cases {
            let img = RgbImage::from_pixel(w, h, ::image::Rgb([0, 0, 0]));
            let bytes = encoded(&img, format);
            let path = Path::new("strip");
            let rgb = decode_rgb(&bytes, path, DEFAULT_MAX_PIXELS)
                .unwrap_or_else(|e| panic!("{format:?} {w} x {h}: {e}"));
            assert_eq!(rgb.dimensions(), (w, h), "{format:?}");
            let t = preprocess(&rgb, &Preprocessing::default(), path).unwrap();
            assert_eq!(t.len(), 3 * 224 * 224, "{format:?} {w} x {h}");
        }
    }

    #[test]
    fn composite_blends_over_the_background() {
        let path = tmp("half.png");
        ImageBuffer::from_fn(2, 2, |x, _| {
            Rgba([0u8, 100, 200, if x == 0 { 0 } else { 128 }])
        })
        .save(&path)
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let pre = Preprocessing {
            alpha: Alpha::Composite([255, 255, 255]),
            ..Preprocessing::default()
        };
        let rgb = decode_for(&bytes, &path, DEFAULT_MAX_PIXELS, &pre).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        // 0*128/255 + 255*127/255 = 127; 100*128/255 + 127 = 177.2; 200*128/255 + 127 = 227.4
        assert_eq!(rgb.get_pixel(1, 0).0, [127, 177, 227]);
        let dropped =
            decode_for(&bytes, &path, DEFAULT_MAX_PIXELS, &Preprocessing::default()).unwrap();
        assert_eq!(dropped.get_pixel(0, 0).0, [0, 100, 200]);
    }
}
