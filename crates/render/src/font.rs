//! Text in DejaVu Sans, embedded in the binary and drawn with antialiasing
//! by `ab_glyph`.
//!
//! The extension runs inside whatever process loaded DuckDB, on machines
//! with no guaranteed system fonts, so the font is compiled in
//! (`fonts/DejaVuSans.ttf`, Bitstream Vera licence beside it). DejaVu covers
//! Latin, Greek and the typographic marks the figures use (`ρ`, `é`, `×`,
//! `−`, `…`); a character it lacks is drawn as `?`.
//!
//! Sizes are three classes shared by every figure: 1 for dense tick labels,
//! 2 for ordinary labels and 3 for titles (see [`px_size`]). A line of text
//! occupies a box [`text_height`] tall whose baseline lies [`ascent`] below
//! its top. Glyphs are placed at fractional positions with the font's
//! kerning and blended into the canvas by their coverage.
//!
//! Vertical text is rotated 90° counter-clockwise and reads bottom to top,
//! like matplotlib's `rotation=90` x tick labels.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, GlyphId, PxScale, ScaleFont};

use crate::canvas::{Canvas, Rgb};

/// DejaVu Sans 2.37, as shipped by the `fonts-dejavu-core` package.
static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    // The bytes are a constant of this crate; the unit tests parse them.
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("embedded font parses"))
}

/// Horizontal placement of text relative to an anchor x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HAlign {
    /// The text starts at the anchor.
    Left,
    /// The text is centred on the anchor.
    Center,
    /// The text ends at the anchor.
    Right,
}

/// Vertical placement of text relative to an anchor y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VAlign {
    /// The text box's top is at the anchor.
    Top,
    /// Capital letters and digits are centred on the anchor.
    Middle,
    /// The text box's bottom is at the anchor.
    Bottom,
}

/// Where a long label is shortened when it does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ellipsis {
    /// `"block5.expand…"`: keep the start.
    End,
    /// `"blo…5.project"`: keep start and end, which for layer names are
    /// usually both informative.
    Middle,
}

/// Font size in pixels (ascender to descender) of a size class: 1 dense
/// tick labels, 2 labels, 3 titles; larger classes grow by 7 px a step.
pub fn px_size(scale: u32) -> f32 {
    match scale {
        0 | 1 => 14.0,
        2 => 18.0,
        s => 25.0 + 7.0 * (s - 3) as f32,
    }
}

fn scaled(scale: u32) -> ab_glyph::PxScaleFont<&'static FontRef<'static>> {
    font().as_scaled(PxScale::from(px_size(scale)))
}

/// Height of a line of text in pixels: ascender plus descender.
pub fn text_height(scale: u32) -> u32 {
    let s = scaled(scale);
    (s.ascent() - s.descent()).ceil() as u32
}

/// Distance from the top of a text box to its baseline.
pub fn ascent(scale: u32) -> f32 {
    scaled(scale).ascent()
}

/// Height of capital letters and digits (the height of `H`).
pub fn cap_height(scale: u32) -> f32 {
    let s = scaled(scale);
    let id = s.glyph_id('H');
    s.outline_glyph(id.with_scale(s.scale()))
        .map_or(s.ascent() * 0.75, |g| g.px_bounds().height())
}

/// Offset from a text box's top (or a vertical label's left edge) to the
/// middle of its capitals: the line on which labels are centred.
pub fn cap_centre(scale: u32) -> f32 {
    ascent(scale) - cap_height(scale) / 2.0
}

/// The glyph of `c`, or of `?` when the font lacks it.
fn glyph_id(c: char) -> GlyphId {
    let f = font();
    match f.glyph_id(c) {
        GlyphId(0) => f.glyph_id('?'),
        id => id,
    }
}

/// Pen positions of each glyph of `text` and the total advance.
fn layout(text: &str, scale: u32) -> (Vec<(GlyphId, f32)>, f32) {
    let s = scaled(scale);
    let mut pen = 0.0f32;
    let mut prev: Option<GlyphId> = None;
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let id = glyph_id(c);
        if let Some(p) = prev {
            pen += s.kern(p, id);
        }
        out.push((id, pen));
        pen += s.h_advance(id);
        prev = Some(id);
    }
    (out, pen)
}

/// Width of `text` in pixels at size class `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    layout(text, scale).1.ceil() as u32
}

/// Calls `f(x, y, coverage)` for each inked pixel of `text` laid out with
/// its box's top-left corner at the origin.
fn for_each_pixel(text: &str, scale: u32, mut f: impl FnMut(i64, i64, f32)) {
    let s = scaled(scale);
    let baseline = s.ascent();
    for (id, pen) in layout(text, scale).0 {
        let g = id.with_scale_and_position(s.scale(), ab_glyph::point(pen, baseline));
        if let Some(outlined) = font().outline_glyph(g) {
            let b = outlined.px_bounds();
            let (bx, by) = (b.min.x as i64, b.min.y as i64);
            outlined.draw(|x, y, c| f(bx + i64::from(x), by + i64::from(y), c));
        }
    }
}

/// Draws `text` with its box's top-left corner at `(x, y)`.
pub fn draw_text(canvas: &mut Canvas, x: i64, y: i64, text: &str, scale: u32, color: Rgb) {
    for_each_pixel(text, scale, |px, py, c| {
        canvas.blend(x + px, y + py, color, f64::from(c));
    });
}

/// Draws `text` positioned relative to the anchor `(x, y)`.
#[allow(clippy::too_many_arguments)]
pub fn draw_text_aligned(
    canvas: &mut Canvas,
    x: i64,
    y: i64,
    text: &str,
    scale: u32,
    color: Rgb,
    h: HAlign,
    v: VAlign,
) {
    let w = i64::from(text_width(text, scale));
    let left = match h {
        HAlign::Left => x,
        HAlign::Center => x - w / 2,
        HAlign::Right => x - w,
    };
    let top = match v {
        VAlign::Top => y,
        VAlign::Middle => y - cap_centre(scale).round() as i64,
        VAlign::Bottom => y - i64::from(text_height(scale)),
    };
    draw_text(canvas, left, top, text, scale, color);
}

/// Draws `text` rotated 90° counter-clockwise (reading bottom to top).
///
/// `(x, y)` is the top-left corner of the rotated box, which is
/// [`text_height`] wide and [`text_width`] tall; the tops of the letters
/// face left and the *last* character is at the top. Placing the box's top
/// at an axis therefore right-aligns x tick labels against the axis.
pub fn draw_text_vertical(canvas: &mut Canvas, x: i64, y: i64, text: &str, scale: u32, color: Rgb) {
    let w = i64::from(text_width(text, scale));
    for_each_pixel(text, scale, |px, py, c| {
        canvas.blend(x + py, y + w - 1 - px, color, f64::from(c));
    });
}

/// Shortens `text` with `…` so that it is at most `max_width` pixels wide at
/// `scale`; text that fits is returned unchanged.
///
/// The cut removes characters one at a time (from the end, or from the
/// middle outwards keeping the two sides about even); the fewest removals
/// that fit are found by bisection, since each removal only narrows the
/// text. Trying one removal after the other measured the whole text each
/// time: a label of 100,000 characters took minutes.
pub fn truncate(text: &str, max_width: u32, scale: u32, mode: Ellipsis) -> String {
    if text_width(text, scale) <= max_width {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let ell = '\u{2026}';
    // The characters kept from the start and from the end after `removed`
    // removals.
    let kept = |removed: usize| -> (usize, usize) {
        match mode {
            Ellipsis::End => (n - removed, 0),
            Ellipsis::Middle => middle_split(n, removed),
        }
    };
    let candidate = |removed: usize| -> String {
        let (head, tail) = kept(removed);
        chars[..head]
            .iter()
            .chain([&ell])
            .chain(&chars[n - tail..])
            .collect()
    };
    let fits = |removed: usize| text_width(&candidate(removed), scale) <= max_width;
    if !fits(n) {
        return ell.to_string();
    }
    // Invariant: `hi` removals fit, `lo - 1` do not (0 removals do not fit).
    let (mut lo, mut hi) = (1, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    candidate(hi)
}

/// The characters kept from the start and the end of `n` after `removed`
/// (at least 1) removals from the middle: the start keeps `ceil(n / 2)` at
/// first and the first removal takes from it; from then on removals
/// alternate end, start, ..., so the end keeps as many as the start or one
/// more.
fn middle_split(n: usize, removed: usize) -> (usize, usize) {
    let kept = n - removed;
    (kept / 2, kept - kept / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{INK, WHITE};

    fn ink_bbox(c: &Canvas) -> Option<(i64, i64, i64, i64)> {
        let mut bb: Option<(i64, i64, i64, i64)> = None;
        for y in 0..i64::from(c.height()) {
            for x in 0..i64::from(c.width()) {
                if c.get(x, y) != Some(WHITE) {
                    bb = Some(match bb {
                        None => (x, y, x, y),
                        Some((a, b, cc, d)) => (a.min(x), b.min(y), cc.max(x), d.max(y)),
                    });
                }
            }
        }
        bb
    }

    #[test]
    fn text_is_antialiased_inside_its_box() {
        let mut c = Canvas::new(200, 60, WHITE).unwrap();
        let (x, y, s) = (10, 20, 2);
        draw_text(&mut c, x, y, "Layer 3g", s, INK);
        let w = i64::from(text_width("Layer 3g", s));
        let h = i64::from(text_height(s));
        let (x0, y0, x1, y1) = ink_bbox(&c).expect("text drew nothing");
        assert!(
            x0 >= x && y0 >= y && x1 <= x + w && y1 < y + h,
            "{x0},{y0},{x1},{y1}"
        );
        let greys: std::collections::BTreeSet<u8> = c.pixels().iter().copied().collect();
        assert!(greys.len() > 10, "only {} grey levels", greys.len());
        assert!(
            c.pixels().chunks(3).any(|p| p == INK),
            "no fully inked pixel"
        );
    }

    #[test]
    fn vertical_text_is_the_rotated_box() {
        let mut c = Canvas::new(60, 200, WHITE).unwrap();
        draw_text_vertical(&mut c, 5, 10, "conv1", 2, INK);
        let w = i64::from(text_width("conv1", 2));
        let (x0, y0, x1, y1) = ink_bbox(&c).expect("text drew nothing");
        assert!(x0 >= 5 && x1 < 5 + i64::from(text_height(2)));
        assert!(
            y0 >= 10 && y1 < 10 + w && y1 - y0 > w - 6,
            "{y0}..{y1} of {w}"
        );
    }

    #[test]
    fn sizes_grow_and_widths_are_proportional() {
        assert!(text_width("i", 1) < text_width("m", 1));
        assert_eq!(text_width("", 3), 0);
        assert!(text_width("layer", 2) > text_width("layer", 1));
        assert!(text_height(1) < text_height(2) && text_height(2) < text_height(3));
        let cap = cap_height(2);
        assert!(cap > 0.5 * px_size(2) && cap < ascent(2), "{cap}");
    }

    #[test]
    fn truncation_fits_and_marks_the_cut() {
        let long = "features.12.conv.2.project_output";
        for mode in [Ellipsis::End, Ellipsis::Middle] {
            let t = truncate(long, 80, 1, mode);
            assert!(text_width(&t, 1) <= 80, "{t}");
            assert!(t.contains('\u{2026}'));
        }
        let mid = truncate(long, 150, 1, Ellipsis::Middle);
        assert!(mid.starts_with("feat") && mid.ends_with("output"), "{mid}");
        let end = truncate(long, 150, 1, Ellipsis::End);
        assert!(
            end.starts_with("features.1") && end.ends_with('\u{2026}'),
            "{end}"
        );
        assert_eq!(truncate("short", 500, 2, Ellipsis::End), "short");
        // Nothing fits: the bare ellipsis rather than a panic.
        assert_eq!(truncate("abc", 0, 1, Ellipsis::Middle), "\u{2026}");
    }

    /// The cut made one removal at a time, as a reference for the bisection.
    fn truncate_by_scan(text: &str, max_width: u32, scale: u32, mode: Ellipsis) -> String {
        if text_width(text, scale) <= max_width {
            return text.to_string();
        }
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        let (mut head, mut tail) = (n.div_ceil(2), n / 2);
        for removed in 1..=n {
            let (h, t) = match mode {
                Ellipsis::End => (n - removed, 0),
                Ellipsis::Middle => {
                    if head >= tail && head > 0 {
                        head -= 1;
                    } else {
                        tail -= 1;
                    }
                    (head, tail)
                }
            };
            let candidate: String = chars[..h]
                .iter()
                .chain(['\u{2026}'].iter())
                .chain(&chars[n - t..])
                .collect();
            if removed == n || text_width(&candidate, scale) <= max_width {
                return candidate;
            }
        }
        unreachable!("the last removal returns")
    }

    #[test]
    fn bisection_cuts_where_removing_one_at_a_time_does() {
        let texts = [
            "features.12.conv.2.project_output",
            "a",
            "ab",
            "WWWWiiiiWWWWiiii",
            "Ωμέγα.layer/ünïcode—names",
            "blocks.15.project.pointwise",
        ];
        for text in texts {
            for mode in [Ellipsis::End, Ellipsis::Middle] {
                for max_width in [0, 5, 12, 30, 57, 80, 111, 150, 400] {
                    for scale in [1, 2] {
                        assert_eq!(
                            truncate(text, max_width, scale, mode),
                            truncate_by_scan(text, max_width, scale, mode),
                            "{text:?} {mode:?} width {max_width} scale {scale}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_very_long_label_is_cut_to_fit() {
        let long = "y".repeat(100_000);
        for mode in [Ellipsis::End, Ellipsis::Middle] {
            let t = truncate(&long, 300, 2, mode);
            assert!(text_width(&t, 2) <= 300 && t.contains('\u{2026}'), "{t}");
            assert!(t.chars().count() > 10, "{t}");
        }
    }

    #[test]
    fn unknown_characters_fall_back_and_greek_is_covered() {
        for c in ['ρ', 'é', '×', '−', '…'] {
            assert_ne!(font().glyph_id(c), GlyphId(0), "{c} missing");
        }
        assert_eq!(glyph_id('\u{4e2d}'), glyph_id('?'));
    }
}
