//! Resize, centre-crop and normalise an RGB image into a network input.
//!
//! The default matches the usual ImageNet evaluation transform (and the demo
//! model's training): scale the image so that it covers the input size,
//! keeping its aspect ratio (for a square input: the shorter side becomes the
//! input size), crop the centre, then `(x - mean) / std` per channel on the
//! 0–255 scale. The resize is a convolution with a bilinear (triangle)
//! filter scaled to the reduction factor, i.e. antialiased like Pillow's
//! `Image.resize(..., BILINEAR)`, done with SIMD by `fast_image_resize`.
//!
//! Only the source window that survives the crop is resampled, straight to
//! the input size (Pillow's `resize(size, box=...)`): the filter still reads
//! source pixels just outside the window, clipped to the whole image, so the
//! result is that of resizing the whole image and cropping, while memory
//! stays bounded by the input size whatever the image's aspect ratio (a
//! 1 x 2,000,000 strip would otherwise become a 224 x 448,000,000
//! intermediate).
//!
//! Grey inputs (one channel) take ITU-R 601-2 luma as Pillow's
//! `convert("L")` computes it, before the resize; `uint8` inputs take the
//! raw 0–255 values without mean and std.

use std::path::Path;

use ::image::RgbImage;
use fast_image_resize::{
    images::{Image, ImageRef},
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
};

use super::ImageError;

/// The largest input side accepted (height or width, in pixels): one
/// image's tensor is then at most 3 x 4096 x 4096 values (192 MiB as
/// `f32`), and a model or metadata asking for more is refused instead of
/// allocating without bound.
pub const MAX_INPUT_SIDE: u32 = 4096;

/// How the image is fitted to the network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// Keep the aspect ratio, cover the input, crop the centre.
    ShorterSideCenterCrop,
    /// Resize to the input size, ignoring the aspect ratio.
    Stretch,
    /// Keep the aspect ratio, fit inside the input, pad the rest with
    /// `pad_value` (Pillow's `ImageOps.pad`: centred, sizes and offsets
    /// rounded half to even as Python's `round`).
    Letterbox,
}

impl ResizeMode {
    /// The valid names, as errors list them.
    pub const NAMES: &'static str = "shorter_side_then_center_crop, stretch, letterbox";

    /// Parses a name (case-insensitive).
    pub fn parse(text: &str) -> Option<ResizeMode> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "shorter_side_then_center_crop" => ResizeMode::ShorterSideCenterCrop,
            "stretch" => ResizeMode::Stretch,
            "letterbox" => ResizeMode::Letterbox,
            _ => return None,
        })
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            ResizeMode::ShorterSideCenterCrop => "shorter_side_then_center_crop",
            ResizeMode::Stretch => "stretch",
            ResizeMode::Letterbox => "letterbox",
        }
    }
}

/// The resampling filter of the resize, each as Pillow's filter of the
/// same name (antialiased when shrinking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Triangle filter, Pillow's `BILINEAR`.
    Bilinear,
    /// Cubic convolution with a = -0.5 (Catmull-Rom), Pillow's `BICUBIC`.
    Bicubic,
    /// Lanczos with 3 lobes, Pillow's `LANCZOS`.
    Lanczos,
    /// Nearest neighbour, Pillow's `NEAREST`.
    Nearest,
    /// Box filter (area average), Pillow's `BOX`.
    Area,
}

impl Interpolation {
    /// The valid names, as errors list them.
    pub const NAMES: &'static str = "bilinear, bicubic, lanczos, nearest, area";

    /// Parses a name (case-insensitive).
    pub fn parse(text: &str) -> Option<Interpolation> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "bilinear" => Interpolation::Bilinear,
            "bicubic" => Interpolation::Bicubic,
            "lanczos" => Interpolation::Lanczos,
            "nearest" => Interpolation::Nearest,
            "area" => Interpolation::Area,
            _ => return None,
        })
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
            Interpolation::Lanczos => "lanczos",
            Interpolation::Nearest => "nearest",
            Interpolation::Area => "area",
        }
    }

    fn algorithm(self) -> ResizeAlg {
        match self {
            Interpolation::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Interpolation::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
            Interpolation::Lanczos => ResizeAlg::Convolution(FilterType::Lanczos3),
            Interpolation::Nearest => ResizeAlg::Nearest,
            Interpolation::Area => ResizeAlg::Convolution(FilterType::Box),
        }
    }

    /// The filter's support in source pixels at scale 1.
    fn support(self) -> f64 {
        match self {
            Interpolation::Bilinear => 1.0,
            Interpolation::Bicubic => 2.0,
            Interpolation::Lanczos => 3.0,
            Interpolation::Nearest | Interpolation::Area => 0.5,
        }
    }
}

/// The order of the colour channels in the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue (PyTorch, TensorFlow).
    Rgb,
    /// Blue, green, red (Caffe, OpenCV).
    Bgr,
}

/// What happens to the transparency of an image that has some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpha {
    /// Ignore it (Pillow's `convert("RGB")`).
    Drop,
    /// Blend the image over a background of this colour.
    Composite([u8; 3]),
}

/// Memory order of the input tensor (without the batch axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Channels first: `[C, H, W]` (PyTorch, ONNX exports).
    Nchw,
    /// Channels last: `[H, W, C]` (TensorFlow exports).
    Nhwc,
}

/// Which values the tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputValues {
    /// `(x - mean) / std` per channel (float inputs).
    Normalised,
    /// The 0–255 pixel values themselves (`uint8` inputs); mean and std
    /// are not applied.
    Raw,
}

/// Everything needed to turn pixels into one image's input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    /// Input height in pixels.
    pub height: u32,
    /// Input width in pixels.
    pub width: u32,
    /// Channels of the input: 3 (RGB) or 1 (grey, normalised with the
    /// first mean and std values).
    pub channels: u32,
    /// Per-channel mean (R, G, B) on the 0–255 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (R, G, B) on the 0–255 scale.
    pub std: [f32; 3],
    /// How the image is fitted to the input size.
    pub resize: ResizeMode,
    /// Channel order of the tensor.
    pub layout: Layout,
    /// Normalised values or raw pixels.
    pub values: InputValues,
    /// The shorter side before the centre crop (torchvision's
    /// `Resize(256)` then `CenterCrop(224)`); `None`: just cover the input.
    pub resize_size: Option<u32>,
    /// The resampling filter.
    pub interpolation: Interpolation,
    /// Colour channel order of the tensor; `mean` and `std` are given in
    /// this order.
    pub channel_order: ChannelOrder,
    /// Whether decoding rotates the image by its EXIF orientation.
    pub exif: bool,
    /// What decoding does with transparency.
    pub alpha: Alpha,
    /// The pixel value (0–255 scale, tensor channel order) of the border
    /// that `Letterbox` adds; normalised like the image's pixels.
    pub pad_value: [f32; 3],
}

impl Default for Preprocessing {
    /// The demo model's preprocessing (EfficientNet-Lite0): 224 px, RGB,
    /// `(x - 127) / 128`, shorter side then centre crop, NCHW.
    fn default() -> Self {
        Preprocessing {
            height: 224,
            width: 224,
            channels: 3,
            mean: [127.0; 3],
            std: [128.0; 3],
            resize: ResizeMode::ShorterSideCenterCrop,
            layout: Layout::Nchw,
            values: InputValues::Normalised,
            resize_size: None,
            interpolation: Interpolation::Bilinear,
            channel_order: ChannelOrder::Rgb,
            exif: true,
            alpha: Alpha::Drop,
            pad_value: [0.0; 3],
        }
    }
}

impl Preprocessing {
    /// Number of values in one image's input tensor.
    pub fn tensor_len(&self) -> usize {
        self.channels as usize * self.height as usize * self.width as usize
    }

    /// The per-image input shape (no batch axis) in the model's layout.
    pub fn shape(&self) -> [usize; 3] {
        let (c, h, w) = (
            self.channels as usize,
            self.height as usize,
            self.width as usize,
        );
        match self.layout {
            Layout::Nchw => [c, h, w],
            Layout::Nhwc => [h, w, c],
        }
    }
}

/// The intermediate size before the centre crop: the smallest size with the
/// image's aspect ratio that covers `target`, rounded like Pillow users do
/// (`round(w * scale)`). Only used to place the crop; never allocated.
fn cover_size(src: (u32, u32), target: (u32, u32), shorter: Option<u32>) -> (u64, u64) {
    let (w, h) = (f64::from(src.0), f64::from(src.1));
    let scale = match shorter {
        // The shorter side becomes `shorter` (never less than covering).
        Some(s) => (f64::from(s) / w.min(h))
            .max(f64::from(target.0) / w)
            .max(f64::from(target.1) / h),
        None => (f64::from(target.0) / w).max(f64::from(target.1) / h),
    };
    let rw = ((w * scale).round() as u64).max(u64::from(target.0));
    let rh = ((h * scale).round() as u64).max(u64::from(target.1));
    (rw, rh)
}

/// The source window `(left, top, width, height)`, in source pixels, that
/// becomes the `target` centre crop of the image resized to `cover_size`.
fn crop_window(src: (u32, u32), target: (u32, u32), shorter: Option<u32>) -> (f64, f64, f64, f64) {
    let (rw, rh) = cover_size(src, target, shorter);
    let axis = |src: u32, resized: u64, target: u32| {
        let src = f64::from(src);
        // Source pixels per resized pixel, as a whole-image resize uses.
        let step = src / resized as f64;
        let start = ((resized - u64::from(target)) / 2) as f64 * step;
        // Rounding must not push the window past the image's edge.
        let len = (f64::from(target) * step).min(src - start);
        (start, len)
    };
    let (left, width) = axis(src.0, rw, target.0);
    let (top, height) = axis(src.1, rh, target.1);
    (left, top, width, height)
}

/// Where the image goes inside a `target` input when letterboxed:
/// `(left, top, width, height)` in input pixels. As Pillow's
/// `ImageOps.pad`: the side that fits keeps the input's size, the other is
/// `round(other * ratio)` (at least 1 pixel), centred with
/// `round(free / 2)`, Python's rounding (half to even) throughout.
fn letterbox_box(src: (u32, u32), target: (u32, u32)) -> (u32, u32, u32, u32) {
    let (w, h) = (f64::from(src.0), f64::from(src.1));
    let (tw, th) = target;
    let (image_ratio, target_ratio) = (w / h, f64::from(tw) / f64::from(th));
    if image_ratio == target_ratio {
        return (0, 0, tw, th);
    }
    let fit = |v: f64, limit: u32| (v.round_ties_even() as u32).clamp(1, limit);
    if image_ratio > target_ratio {
        let nh = fit(h / w * f64::from(tw), th);
        let top = (f64::from(th - nh) * 0.5).round_ties_even() as u32;
        (0, top, tw, nh)
    } else {
        let nw = fit(w / h * f64::from(th), tw);
        let left = (f64::from(tw - nw) * 0.5).round_ties_even() as u32;
        (left, 0, nw, th)
    }
}

/// ITU-R 601-2 luma of each pixel, with Pillow's `convert("L")` rounding:
/// `(R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16`.
fn luma(img: &RgbImage) -> Vec<u8> {
    img.as_raw()
        .chunks_exact(3)
        .map(|p| {
            let l = u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471;
            ((l + 0x8000) >> 16) as u8
        })
        .collect()
}

/// Source pixels on either side of a sample that the bilinear filter
/// reads when `src_len` source pixels become `dst_len` (the filter widens
/// when shrinking), plus one for rounding.
fn filter_reach(src_len: f64, dst_len: u32, support: f64) -> f64 {
    (src_len / f64::from(dst_len)).max(1.0) * support.max(1.0) + 1.0
}

/// Resizes (and for `ShorterSideCenterCrop` crops) `img` to the input size;
/// returns `channels` interleaved bytes per pixel, row by row.
///
/// The convolution runs in two passes through an intermediate image.
/// `fast_image_resize` makes the vertical pass first, through an
/// intermediate of the window's width (with the filter's reach) by the
/// input height: for a window far wider than tall, such as a stretched
/// 2,000,000 x 1 strip, that is hundreds of millions of pixels. Then the
/// horizontal pass runs first instead (Pillow's order), through an
/// intermediate of the input width by the rows the vertical pass reads,
/// so the intermediate never exceeds the smaller of the two.
fn resize(img: &RgbImage, pre: &Preprocessing, path: &Path) -> Result<Vec<u8>, ImageError> {
    let resize_error = |reason: String| ImageError::Resize {
        path: path.to_path_buf(),
        reason,
    };
    let (sw, sh) = img.dimensions();
    if sw == 0 || sh == 0 {
        return Err(resize_error(format!("image has no pixels ({sw} x {sh})")));
    }
    let grey;
    let (bytes, pixel_type) = if pre.channels == 1 {
        grey = luma(img);
        (grey.as_slice(), PixelType::U8)
    } else {
        (img.as_raw().as_slice(), PixelType::U8x3)
    };
    let src = ImageRef::new(sw, sh, bytes, pixel_type).map_err(|e| resize_error(e.to_string()))?;
    let (tw, th) = (pre.width, pre.height);
    let (left, top, width, height) = match pre.resize {
        ResizeMode::ShorterSideCenterCrop => crop_window((sw, sh), (tw, th), pre.resize_size),
        ResizeMode::Stretch | ResizeMode::Letterbox => (0.0, 0.0, f64::from(sw), f64::from(sh)),
    };
    let options = ResizeOptions::new().resize_alg(pre.interpolation.algorithm());
    let support = pre.interpolation.support();
    let mut resizer = Resizer::new();
    let mut dst = Image::new(tw, th, pixel_type);

    // Source rows the vertical pass reads, and the sizes of both orders'
    // intermediates.
    let reach = filter_reach(height, th, support);
    let first_row = (top - reach).floor().max(0.0);
    let end_row = (top + height + reach).ceil().min(f64::from(sh));
    let rows = end_row - first_row;
    let cols = (width + 2.0 * filter_reach(width, tw, support)).min(f64::from(sw));
    let vertical_first = cols * f64::from(th);
    let horizontal_first = f64::from(tw) * rows;

    if vertical_first <= 2.0 * horizontal_first {
        resizer
            .resize(&src, &mut dst, &options.crop(left, top, width, height))
            .map_err(|e| resize_error(e.to_string()))?;
    } else {
        // Horizontal pass over the rows the vertical pass needs; the window
        // keeps its integer rows, so no vertical resampling happens here.
        let mut strip = Image::new(tw, rows as u32, pixel_type);
        resizer
            .resize(
                &src,
                &mut strip,
                &options.crop(left, first_row, width, rows),
            )
            .map_err(|e| resize_error(e.to_string()))?;
        // Vertical pass: the same window, in the strip's rows. Every row
        // the filter reads is in the strip, and the strip's edges are the
        // image's edges wherever the filter reaches them, so the result is
        // that of one two-pass resize of the whole image.
        let top_in_strip = (top - first_row).max(0.0);
        let height_in_strip = height.min(rows - top_in_strip);
        resizer
            .resize(
                &strip,
                &mut dst,
                &options.crop(0.0, top_in_strip, f64::from(tw), height_in_strip),
            )
            .map_err(|e| resize_error(e.to_string()))?;
    }
    Ok(dst.into_vec())
}

/// Resizes, crops and normalises `img` into a flat tensor of
/// `pre.tensor_len()` values in `pre.layout` order (raw 0–255 values for
/// `InputValues::Raw`). `path` only names the image in errors.
pub fn preprocess(
    img: &RgbImage,
    pre: &Preprocessing,
    path: &Path,
) -> Result<Vec<f32>, ImageError> {
    let resize_error = |reason: String| ImageError::Resize {
        path: path.to_path_buf(),
        reason,
    };
    let (w, h) = (pre.width, pre.height);
    if !(1..=MAX_INPUT_SIDE).contains(&w) || !(1..=MAX_INPUT_SIDE).contains(&h) {
        return Err(resize_error(format!(
            "input size {h} x {w} is outside 1 to {MAX_INPUT_SIDE} pixels per side"
        )));
    }
    if pre.channels != 1 && pre.channels != 3 {
        return Err(resize_error(format!(
            "{} input channels; only 1 (grey) or 3 (RGB) are supported",
            pre.channels
        )));
    }
    // Letterboxing resizes the whole image into its box, then pads.
    let (bx, by, bw, bh) = match pre.resize {
        ResizeMode::Letterbox => letterbox_box(img.dimensions(), (w, h)),
        _ => (0, 0, w, h),
    };
    let boxed = Preprocessing {
        width: bw,
        height: bh,
        resize: ResizeMode::Stretch,
        ..pre.clone()
    };
    let resize_to = if pre.resize == ResizeMode::Letterbox {
        &boxed
    } else {
        pre
    };
    let mut pixels = resize(img, resize_to, path)?;
    let channels = pre.channels as usize;
    if channels == 3 && pre.channel_order == ChannelOrder::Bgr {
        for px in pixels.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
    }
    let (w, h) = (w as usize, h as usize);
    let (scale, offset): ([f32; 3], [f32; 3]) = match pre.values {
        InputValues::Normalised => (pre.std.map(|s| 1.0 / s), pre.mean),
        InputValues::Raw => ([1.0; 3], [0.0; 3]),
    };
    let mut out = vec![0f32; pre.tensor_len()];
    let (bx, by, bw, bh) = (bx as usize, by as usize, bw as usize, bh as usize);
    let boxed_in = |x: usize, y: usize| x >= bx && x < bx + bw && y >= by && y < by + bh;
    // The pad goes through the same arithmetic as a pixel of that value.
    let pad = |c: usize| (pre.pad_value[c] - offset[c]) * scale[c];
    for y in 0..h {
        for x in 0..w {
            let px = if boxed_in(x, y) {
                Some(&pixels[((y - by) * bw + (x - bx)) * channels..][..channels])
            } else {
                None
            };
            for c in 0..channels {
                let v = match px {
                    Some(px) => (f32::from(px[c]) - offset[c]) * scale[c],
                    None => pad(c),
                };
                let at = match pre.layout {
                    Layout::Nhwc => (y * w + x) * channels + c,
                    Layout::Nchw => c * h * w + y * w + x,
                };
                out[at] = v;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
