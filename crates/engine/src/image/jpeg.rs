//! JPEG decoding with libjpeg-turbo's algorithms.
//!
//! Pillow (and so torchvision, and every Python reference pipeline our users
//! compare with) decodes JPEG with libjpeg-turbo: integer "islow" IDCT and
//! "fancy" triangular chroma upsampling. Pure-Rust decoders differ by up to
//! a few grey levels on 4:2:0 photos — enough to flip a close top-1 class —
//! so YCbCr and grey JPEGs go through libjpeg (mozjpeg's build of it, plain
//! C) here; CMYK/YCCK files, which libjpeg cannot convert to RGB, are left
//! to the `image` crate by the caller. A file without an end-of-image
//! marker is refused as truncated (libjpeg would only warn and pad the
//! missing rows with grey).

use std::panic::{catch_unwind, AssertUnwindSafe};

use ::image::RgbImage;
use mozjpeg::{ColorSpace, Decompress};

/// Why libjpeg did not produce an RGB image.
pub enum JpegOutcome {
    /// Decoded.
    Rgb(RgbImage),
    /// A colour space libjpeg cannot turn into RGB (CMYK, YCCK): decode
    /// another way.
    Unsupported,
    /// The file is broken; the text says how.
    Broken(String),
}

/// Whether the data ends with the end-of-image marker (0xFFD9), allowing
/// for trailing padding after it.
pub fn has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Decodes JPEG `bytes` to 8-bit RGB with libjpeg, refusing (as broken)
/// a frame above `max_pixels` pixels before its pixels are allocated; the
/// caller has checked the header already, this guards against libjpeg
/// reading other dimensions than the header parser did.
pub fn decode_jpeg(bytes: &[u8], max_pixels: u64) -> JpegOutcome {
    if !has_end_marker(bytes) {
        return JpegOutcome::Broken("truncated JPEG (no end-of-image marker)".into());
    }
    let result = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<Option<RgbImage>> {
        let decompress = Decompress::new_mem(bytes)?;
        match decompress.color_space() {
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => return Ok(None),
            _ => {}
        }
        let pixels = decompress.width() as u64 * decompress.height() as u64;
        if pixels > max_pixels {
            return Err(std::io::Error::other(format!(
                "libjpeg reads {} x {} pixels, above the limit of {max_pixels}",
                decompress.width(),
                decompress.height()
            )));
        }
        let mut started = decompress.rgb()?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(RgbImage::from_raw(width, height, pixels))
    }));
    match result {
        Ok(Ok(Some(img))) => JpegOutcome::Rgb(img),
        Ok(Ok(None)) => JpegOutcome::Unsupported,
        Ok(Err(e)) => JpegOutcome::Broken(e.to_string()),
        Err(_) => JpegOutcome::Broken("libjpeg failed to decode the file".into()),
    }
}
