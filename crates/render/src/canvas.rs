//! An RGB pixel buffer with the few drawing primitives the figures need.
//!
//! Figures here are rectangles (matrix cells, colour bars, frames), text
//! (see [`crate::font`]) and, for line plots, anti-aliased lines, markers
//! and translucent bands. It stays hand-written because it is small and
//! exact where it matters: a matrix cell is a solid block of the colormap's
//! colour (tests read values back from pixels), which a plotting library's
//! layout and antialiasing of rectangles would not promise.
//!
//! All drawing clips silently to the canvas, so layout code may pass
//! coordinates that fall partly outside it. Coordinates are `i64` pixels
//! with the origin at the top-left corner; anti-aliased shapes take `f64`
//! coordinates where pixel `(x, y)` covers `[x, x+1) x [y, y+1)`.

use crate::error::{ErrorKind, RenderError, RenderResult};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// White, the background of every figure.
pub const WHITE: Rgb = [255, 255, 255];
/// Near-black used for text and frames (softer than pure black).
pub const INK: Rgb = [34, 34, 34];
/// Light grey for grid lines.
pub const GRID: Rgb = [228, 228, 228];

/// Largest canvas side in pixels; larger requests fail with
/// [`ErrorKind::TooLarge`] instead of allocating gigabytes.
pub const MAX_SIDE: u32 = 16_384;

/// Largest canvas area in pixels (150 MB of RGB), e.g. 7000 x 7000.
pub const MAX_PIXELS: u64 = 50_000_000;

/// An RGB image being drawn.
#[derive(Debug, Clone)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A `width` x `height` canvas filled with `background`.
    ///
    /// Fails if either side is zero or larger than [`MAX_SIDE`].
    pub fn new(width: u32, height: u32, background: Rgb) -> RenderResult<Canvas> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(RenderError::new(
                ErrorKind::TooLarge,
                format!("canvas: size {width} x {height} is outside 1..={MAX_SIDE} pixels"),
            ));
        }
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(RenderError::new(
                ErrorKind::TooLarge,
                format!("canvas: size {width} x {height} exceeds {MAX_PIXELS} pixels"),
            ));
        }
        let len = width as usize * height as usize * 3;
        let mut pixels = Vec::with_capacity(len);
        for _ in 0..width as usize * height as usize {
            pixels.extend_from_slice(&background);
        }
        Ok(Canvas {
            width,
            height,
            pixels,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The raw pixels, row-major, three bytes per pixel.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return None;
        }
        Some((y as usize * self.width as usize + x as usize) * 3)
    }

    /// The colour at `(x, y)`, or `None` outside the canvas.
    pub fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        let i = self.index(x, y)?;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// Sets one pixel (ignored outside the canvas).
    pub fn put(&mut self, x: i64, y: i64, color: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    /// Mixes `color` into one pixel with opacity `alpha` in `[0, 1]`.
    pub fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: f64) {
        let a = alpha.clamp(0.0, 1.0);
        if a <= 0.0 {
            return;
        }
        if let Some(i) = self.index(x, y) {
            for (k, &c) in color.iter().enumerate() {
                let old = f64::from(self.pixels[i + k]);
                self.pixels[i + k] = (old + (f64::from(c) - old) * a).round() as u8;
            }
        }
    }

    /// Fills the rectangle with top-left `(x, y)` and size `w` x `h`.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: u32, h: u32, color: Rgb) {
        let x0 = x.max(0);
        let y0 = y.max(0);
        let x1 = (x + i64::from(w)).min(i64::from(self.width));
        let y1 = (y + i64::from(h)).min(i64::from(self.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let stride = self.width as usize * 3;
        for yy in y0 as usize..y1 as usize {
            let row = &mut self.pixels[yy * stride..(yy + 1) * stride];
            for px in row[x0 as usize * 3..x1 as usize * 3].chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Draws a rectangle outline of `thickness` pixels lying *outside* the
    /// rectangle `(x, y, w, h)`, so a frame never covers the content it frames.
    pub fn frame(&mut self, x: i64, y: i64, w: u32, h: u32, thickness: u32, color: Rgb) {
        let t = i64::from(thickness);
        let (wi, hi) = (i64::from(w), i64::from(h));
        let outer_w = w + 2 * thickness;
        self.fill_rect(x - t, y - t, outer_w, thickness, color);
        self.fill_rect(x - t, y + hi, outer_w, thickness, color);
        self.fill_rect(x - t, y, thickness, h, color);
        self.fill_rect(x + wi, y, thickness, h, color);
    }

    /// A horizontal line of `len` pixels starting at `(x, y)`.
    pub fn hline(&mut self, x: i64, y: i64, len: u32, color: Rgb) {
        self.fill_rect(x, y, len, 1, color);
    }

    /// A vertical line of `len` pixels starting at `(x, y)`.
    pub fn vline(&mut self, x: i64, y: i64, len: u32, color: Rgb) {
        self.fill_rect(x, y, 1, len, color);
    }

    /// An anti-aliased line segment of the given `width` (in pixels) with
    /// round caps, from `(x0, y0)` to `(x1, y1)` in continuous coordinates.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: f64, color: Rgb) {
        if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
            return;
        }
        let r = (width / 2.0).max(0.5);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        let bx0 = (x0.min(x1) - r - 1.0).floor().max(-1.0) as i64;
        let by0 = (y0.min(y1) - r - 1.0).floor().max(-1.0) as i64;
        let bx1 = (x0.max(x1) + r + 1.0)
            .ceil()
            .min(f64::from(self.width) + 1.0) as i64;
        let by1 = (y0.max(y1) + r + 1.0)
            .ceil()
            .min(f64::from(self.height) + 1.0) as i64;
        for py in by0..=by1 {
            for px in bx0..=bx1 {
                let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((cx - x0) * dx + (cy - y0) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (x0 + t * dx - cx, y0 + t * dy - cy);
                let d = (qx * qx + qy * qy).sqrt();
                let coverage = (r + 0.5 - d).clamp(0.0, 1.0);
                self.blend(px, py, color, coverage);
            }
        }
    }

    /// An anti-aliased filled circle of radius `r` centred at `(cx, cy)`.
    pub fn fill_circle(&mut self, cx: f64, cy: f64, r: f64, color: Rgb) {
        if !(cx.is_finite() && cy.is_finite() && r.is_finite()) || r <= 0.0 {
            return;
        }
        let x0 = (cx - r - 1.0).floor() as i64;
        let x1 = (cx + r + 1.0).ceil() as i64;
        let y0 = (cy - r - 1.0).floor() as i64;
        let y1 = (cy + r + 1.0).ceil() as i64;
        for py in y0..=y1 {
            for px in x0..=x1 {
                let (dx, dy) = (px as f64 + 0.5 - cx, py as f64 + 0.5 - cy);
                let coverage = (r + 0.5 - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0);
                self.blend(px, py, color, coverage);
            }
        }
    }

    /// An anti-aliased filled polygon (vertices in order, non-zero
    /// winding) blended in with `opacity` in `[0, 1]`: exact area coverage
    /// from `ab_glyph`'s rasteriser. Rows outside the canvas are clipped;
    /// vertices' x are clamped to one pixel beyond the canvas sides (the
    /// figures' polygons lie inside it horizontally).
    pub fn fill_polygon(&mut self, points: &[(f64, f64)], color: Rgb, opacity: f64) {
        if points.len() < 3 || points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
            return;
        }
        // Rasterise only the polygon's bounding box (rows clipped to the
        // canvas; the rasteriser clips edges above its first row itself).
        let max_x = f64::from(self.width) + 1.0;
        let clamp_x = |x: f64| x.clamp(-1.0, max_x);
        let fold = |pick: fn(&(f64, f64)) -> f64, f: fn(f64, f64) -> f64, init: f64| {
            points.iter().map(pick).fold(init, f)
        };
        let x0 = clamp_x(fold(|p| p.0, f64::min, f64::INFINITY)).floor();
        let x1 = clamp_x(fold(|p| p.0, f64::max, f64::NEG_INFINITY)).ceil();
        let height = f64::from(self.height);
        let y0 = fold(|p| p.1, f64::min, f64::INFINITY)
            .floor()
            .clamp(0.0, height);
        let y1 = fold(|p| p.1, f64::max, f64::NEG_INFINITY)
            .ceil()
            .clamp(0.0, height);
        let (w, h) = ((x1 - x0) as usize + 2, (y1 - y0) as usize + 1);
        let mut raster = ab_glyph_rasterizer::Rasterizer::new(w, h);
        let at = |p: &(f64, f64)| {
            ab_glyph_rasterizer::point((clamp_x(p.0) - x0) as f32, (p.1 - y0) as f32)
        };
        for (k, p) in points.iter().enumerate() {
            raster.draw_line(at(p), at(&points[(k + 1) % points.len()]));
        }
        let (ox, oy) = (x0 as i64, y0 as i64);
        raster.for_each_pixel_2d(|px, py, c| {
            if c > 0.0 {
                let a = f64::from(c.min(1.0)) * opacity;
                self.blend(ox + i64::from(px), oy + i64::from(py), color, a);
            }
        });
    }

    /// Copies all of `other` onto this canvas with its top-left corner at
    /// `(x, y)`, clipped to this canvas.
    pub fn blit(&mut self, other: &Canvas, x: i64, y: i64) {
        for oy in 0..i64::from(other.height) {
            for ox in 0..i64::from(other.width) {
                if let Some(c) = other.get(ox, oy) {
                    self.put(x + ox, y + oy, c);
                }
            }
        }
    }

    /// Encodes the canvas as an 8-bit RGB PNG.
    pub fn encode_png(&self) -> RenderResult<Vec<u8>> {
        let mut out = Vec::new();
        let encoder =
            PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive);
        encoder
            .write_image(
                &self.pixels,
                self.width,
                self.height,
                ExtendedColorType::Rgb8,
            )
            .map_err(|e| {
                RenderError::new(ErrorKind::Encode, format!("png: encoding failed ({e})"))
            })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_keeps_size_and_pixels() {
        let mut c = Canvas::new(30, 20, WHITE).unwrap();
        c.fill_rect(5, 5, 10, 4, [200, 10, 20]);
        let png = c.encode_png().unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (30, 20));
        assert_eq!(img.get_pixel(7, 6).0, [200, 10, 20]);
        assert_eq!(img.get_pixel(0, 0).0, WHITE);
    }

    #[test]
    fn drawing_clips_instead_of_panicking() {
        let mut c = Canvas::new(10, 10, WHITE).unwrap();
        c.fill_rect(-5, -5, 100, 3, INK);
        c.frame(8, 8, 10, 10, 2, INK);
        c.line(-50.0, -50.0, 60.0, 60.0, 3.0, INK);
        c.fill_circle(0.0, 0.0, 40.0, INK);
        c.fill_polygon(&[(-10.0, 0.0), (30.0, 5.0), (0.0, 30.0)], INK, 1.0);
        c.put(-1, 3, INK);
        assert_eq!(c.get(0, 0), Some(INK));
        assert_eq!(c.get(10, 0), None);
    }

    #[test]
    fn frame_lies_outside_the_rectangle() {
        let mut c = Canvas::new(20, 20, WHITE).unwrap();
        c.fill_rect(5, 5, 10, 10, [1, 2, 3]);
        c.frame(5, 5, 10, 10, 1, INK);
        assert_eq!(c.get(5, 5), Some([1, 2, 3]));
        assert_eq!(c.get(14, 14), Some([1, 2, 3]));
        assert_eq!(c.get(4, 4), Some(INK));
        assert_eq!(c.get(15, 15), Some(INK));
    }

    #[test]
    fn zero_or_huge_canvas_is_an_error() {
        assert_eq!(
            Canvas::new(0, 5, WHITE).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
        assert!(Canvas::new(MAX_SIDE + 1, 5, WHITE).is_err());
        assert!(Canvas::new(MAX_SIDE, MAX_SIDE, WHITE).is_err());
    }

    #[test]
    fn polygon_coverage_is_its_area() {
        let mut c = Canvas::new(20, 20, WHITE).unwrap();
        let square = [(2.5, -4.0), (7.5, -4.0), (7.5, 7.5), (2.5, 7.5)];
        c.fill_polygon(&square, [0, 0, 0], 1.0);
        assert_eq!(c.get(5, 0), Some([0, 0, 0]));
        assert_eq!(c.get(5, 6), Some([0, 0, 0]));
        // Half-covered edge pixels are mid grey; outside stays white.
        let half = c.get(2, 3).unwrap()[0];
        assert!((120..=136).contains(&half), "{half}");
        assert_eq!(c.get(8, 3), Some(WHITE));
        assert_eq!(c.get(5, 8), Some(WHITE));
        // Opacity scales the blend.
        let mut d = Canvas::new(10, 10, WHITE).unwrap();
        d.fill_polygon(
            &[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)],
            [0, 0, 0],
            0.5,
        );
        assert_eq!(d.get(4, 4), Some([128, 128, 128]));
    }

    #[test]
    fn antialiased_line_covers_its_centre() {
        let mut c = Canvas::new(40, 40, WHITE).unwrap();
        c.line(2.0, 20.5, 38.0, 20.5, 2.0, INK);
        assert_eq!(c.get(20, 20), Some(INK));
        assert_eq!(c.get(20, 30), Some(WHITE));
    }
}
