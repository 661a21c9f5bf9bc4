//! Resize, centre-crop and normalise an RGB image into a network input.
//!
//! The default matches the usual ImageNet evaluation transform (and the demo
//! model's training): scale the image so that it covers the input size,
//! keeping its aspect ratio (for a square input: the shorter side becomes the
//! input size), crop the centre, then `(x - mean) / std` per channel on the
//! 0–255 scale. The resize is a convolution with a bilinear (triangle)
//! filter scaled to the reduction factor, i.e. antialiased like Pillow's
//! `Image.resize(..., BILINEAR)`, done with SIMD by `fast_image_resize`.

use std::path::Path;

use ::image::RgbImage;
use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::ImageError;

/// How the image is fitted to the network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// Keep the aspect ratio, cover the input, crop the centre.
    ShorterSideCenterCrop,
    /// Resize to the input size, ignoring the aspect ratio.
    Stretch,
}

/// Memory order of the input tensor (without the batch axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Channels first: `[3, H, W]` (PyTorch, ONNX exports).
    Nchw,
    /// Channels last: `[H, W, 3]` (TensorFlow exports).
    Nhwc,
}

/// Everything needed to turn pixels into one image's input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    /// Input height in pixels.
    pub height: u32,
    /// Input width in pixels.
    pub width: u32,
    /// Per-channel mean (R, G, B) on the 0–255 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (R, G, B) on the 0–255 scale.
    pub std: [f32; 3],
    /// How the image is fitted to the input size.
    pub resize: ResizeMode,
    /// Channel order of the tensor.
    pub layout: Layout,
}

impl Default for Preprocessing {
    /// The demo model's preprocessing (EfficientNet-Lite0): 224 px,
    /// `(x - 127) / 128`, shorter side then centre crop, NCHW.
    fn default() -> Self {
        Preprocessing {
            height: 224,
            width: 224,
            mean: [127.0; 3],
            std: [128.0; 3],
            resize: ResizeMode::ShorterSideCenterCrop,
            layout: Layout::Nchw,
        }
    }
}

impl Preprocessing {
    /// Number of `f32` values in one image's input tensor.
    pub fn tensor_len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }

    /// The per-image input shape (no batch axis) in the model's layout.
    pub fn shape(&self) -> [usize; 3] {
        let (h, w) = (self.height as usize, self.width as usize);
        match self.layout {
            Layout::Nchw => [3, h, w],
            Layout::Nhwc => [h, w, 3],
        }
    }
}

/// The intermediate size before the centre crop: the smallest size with the
/// image's aspect ratio that covers `target`, rounded like Pillow users do
/// (`round(w * scale)`).
fn cover_size(src: (u32, u32), target: (u32, u32)) -> (u32, u32) {
    let (w, h) = (f64::from(src.0), f64::from(src.1));
    let scale = (f64::from(target.0) / w).max(f64::from(target.1) / h);
    let rw = ((w * scale).round() as u32).max(target.0);
    let rh = ((h * scale).round() as u32).max(target.1);
    (rw, rh)
}

/// Resizes, crops and normalises `img` into a flat `f32` tensor of
/// `pre.tensor_len()` values in `pre.layout` order. `path` only names the
/// image in errors.
pub fn preprocess(
    img: &RgbImage,
    pre: &Preprocessing,
    path: &Path,
) -> Result<Vec<f32>, ImageError> {
    let resize_error = |reason: String| ImageError::Resize {
        path: path.to_path_buf(),
        reason,
    };
    let (tw, th) = (pre.width, pre.height);
    let (rw, rh) = match pre.resize {
        ResizeMode::ShorterSideCenterCrop => cover_size(img.dimensions(), (tw, th)),
        ResizeMode::Stretch => (tw, th),
    };
    let src = Image::from_vec_u8(
        img.width(),
        img.height(),
        img.as_raw().clone(),
        PixelType::U8x3,
    )
    .map_err(|e| resize_error(e.to_string()))?;
    let mut resized = Image::new(rw, rh, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut resized, &options)
        .map_err(|e| resize_error(e.to_string()))?;

    let left = ((rw - tw) / 2) as usize;
    let top = ((rh - th) / 2) as usize;
    let row_stride = rw as usize * 3;
    let pixels = resized.buffer();
    let (w, h) = (tw as usize, th as usize);
    let inv_std = pre.std.map(|s| 1.0 / s);
    let mut out = vec![0f32; pre.tensor_len()];
    for y in 0..h {
        let row = &pixels[(top + y) * row_stride + left * 3..][..w * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let v = (f32::from(px[c]) - pre.mean[c]) * inv_std[c];
                let index = match pre.layout {
                    Layout::Nchw => c * h * w + y * w + x,
                    Layout::Nhwc => (y * w + x) * 3 + c,
                };
                out[index] = v;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_size_keeps_aspect_ratio() {
        assert_eq!(cover_size((512, 512), (224, 224)), (224, 224));
        assert_eq!(cover_size((640, 480), (224, 224)), (299, 224));
        assert_eq!(cover_size((480, 640), (224, 224)), (224, 299));
        assert_eq!(cover_size((100, 50), (224, 224)), (448, 224));
    }

    #[test]
    fn constant_image_normalises_exactly() {
        let img = RgbImage::from_pixel(300, 200, ::image::Rgb([255, 127, 0]));
        let pre = Preprocessing::default();
        let t = preprocess(&img, &pre, Path::new("x.png")).unwrap();
        assert_eq!(t.len(), 3 * 224 * 224);
        let plane = 224 * 224;
        assert!((t[0] - 1.0).abs() < 1e-6);
        assert!(t[plane + 500].abs() < 1e-6);
        assert!((t[2 * plane + 7] + 127.0 / 128.0).abs() < 1e-6);
    }

    #[test]
    fn nhwc_interleaves_channels() {
        let img = RgbImage::from_pixel(10, 10, ::image::Rgb([1, 2, 3]));
        let pre = Preprocessing {
            height: 4,
            width: 4,
            mean: [0.0; 3],
            std: [1.0; 3],
            resize: ResizeMode::Stretch,
            layout: Layout::Nhwc,
        };
        let t = preprocess(&img, &pre, Path::new("x.png")).unwrap();
        assert_eq!(&t[..6], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    }
}
