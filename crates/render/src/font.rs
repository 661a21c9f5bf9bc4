//! Text from the public-domain 8x8 bitmap font of the `font8x8` crate.
//!
//! The extension runs inside whatever process loaded DuckDB, on machines
//! with no guaranteed system fonts, so text cannot come from the OS. The
//! 8x8 glyphs are embedded in the binary and scaled up by an integer factor
//! with nearest-neighbour sampling, which keeps their strokes crisp: scale 1
//! gives 8-pixel text (dense tick labels), scale 2 the usual 16-pixel labels
//! and scale 3 titles.
//!
//! Glyphs are set *proportionally*: each glyph's empty columns are trimmed
//! and one font pixel of spacing is added, which reads much better than the
//! font's fixed 8-pixel cell. Basic Latin, Latin-1 and Greek are covered
//! (so `ρ`, `é`, `×` work); `…`, `—` and `−` are mapped to built-in shapes and any
//! other character is drawn as `?`.
//!
//! Vertical text is rotated 90° counter-clockwise and reads bottom to top,
//! like matplotlib's `rotation=90` x tick labels.

use crate::canvas::{Canvas, Rgb};
use font8x8::legacy::{BASIC_LEGACY, LATIN_LEGACY};
use font8x8::{UnicodeFonts, GREEK_FONTS};

/// Height of one line of text at scale 1, in pixels (the glyph cell).
pub const GLYPH_HEIGHT: u32 = 8;
/// Height of capital letters and digits at scale 1 (row 7 is for descenders).
pub const CAP_HEIGHT: u32 = 7;
/// Advance of a space at scale 1.
const SPACE_ADVANCE: u32 = 4;
/// Gap between glyphs at scale 1.
const GAP: u32 = 1;
/// The ellipsis `…`: three dots on the baseline row.
const ELLIPSIS: [u8; 8] = [0, 0, 0, 0, 0, 0, 0b0100_1001, 0];
/// The em dash `—`: a full-width bar at the height of `-`.
const EM_DASH: [u8; 8] = [0, 0, 0, 0xFF, 0, 0, 0, 0];

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
    /// The glyph cell's top is at the anchor.
    Top,
    /// Capital letters and digits are centred on the anchor.
    Middle,
    /// The glyph cell's bottom is at the anchor.
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

/// The 8x8 bitmap of `c` (row-major, bit 0 of each row is the leftmost pixel).
fn glyph(c: char) -> [u8; 8] {
    let code = c as u32;
    match c {
        '\u{2026}' => ELLIPSIS,
        '\u{2014}' => EM_DASH,
        '\u{2212}' | '\u{2010}' | '\u{2011}' | '\u{2013}' => BASIC_LEGACY[usize::from(b'-')],
        ' '..='~' => BASIC_LEGACY[code as usize],
        '\u{a0}'..='\u{ff}' => LATIN_LEGACY[(code - 0xa0) as usize],
        _ => GREEK_FONTS
            .get(c)
            .unwrap_or(BASIC_LEGACY[usize::from(b'?')]),
    }
}

/// First and last non-empty column of a glyph, or `None` for a blank one.
fn columns(g: &[u8; 8]) -> Option<(u32, u32)> {
    let bits = g.iter().fold(0u8, |acc, row| acc | row);
    if bits == 0 {
        None
    } else {
        Some((bits.trailing_zeros(), 7 - bits.leading_zeros()))
    }
}

/// Advance width of one character at scale 1, without the trailing gap.
fn char_width(c: char) -> u32 {
    match columns(&glyph(c)) {
        Some((first, last)) => last - first + 1,
        None => SPACE_ADVANCE,
    }
}

/// Width of `text` in pixels at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    let mut w = 0;
    for (i, c) in text.chars().enumerate() {
        if i > 0 {
            w += GAP;
        }
        w += char_width(c);
    }
    w * scale
}

/// Height of a line of text in pixels at `scale` (the full glyph cell).
pub fn text_height(scale: u32) -> u32 {
    GLYPH_HEIGHT * scale
}

/// Calls `f(x, y)` for each set font pixel of `text` laid out horizontally
/// from the origin, in font pixels (multiply by the scale for screen pixels).
fn for_each_pixel(text: &str, mut f: impl FnMut(u32, u32)) {
    let mut pen = 0u32;
    for c in text.chars() {
        let g = glyph(c);
        match columns(&g) {
            Some((first, last)) => {
                for (row, bits) in g.iter().enumerate() {
                    for col in first..=last {
                        if bits & (1 << col) != 0 {
                            f(pen + col - first, row as u32);
                        }
                    }
                }
                pen += last - first + 1 + GAP;
            }
            None => pen += SPACE_ADVANCE + GAP,
        }
    }
}

/// Draws `text` with its glyph cell's top-left corner at `(x, y)`.
pub fn draw_text(canvas: &mut Canvas, x: i64, y: i64, text: &str, scale: u32, color: Rgb) {
    let s = i64::from(scale);
    for_each_pixel(text, |px, py| {
        canvas.fill_rect(
            x + i64::from(px) * s,
            y + i64::from(py) * s,
            scale,
            scale,
            color,
        );
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
        VAlign::Middle => y - i64::from(CAP_HEIGHT * scale) / 2,
        VAlign::Bottom => y - i64::from(text_height(scale)),
    };
    draw_text(canvas, left, top, text, scale, color);
}

/// Draws `text` rotated 90° counter-clockwise (reading bottom to top).
///
/// `(x, y)` is the top-left corner of the rotated box, which is
/// [`text_height`] wide and [`text_width`] tall; the *last* character is
/// at the top. Placing the box's top at an axis therefore right-aligns
/// x tick labels against the axis.
pub fn draw_text_vertical(canvas: &mut Canvas, x: i64, y: i64, text: &str, scale: u32, color: Rgb) {
    let s = i64::from(scale);
    let w = i64::from(text_width(text, scale));
    for_each_pixel(text, |px, py| {
        let sx = x + i64::from(py) * s;
        let sy = y + w - (i64::from(px) + 1) * s;
        canvas.fill_rect(sx, sy, scale, scale, color);
    });
}

/// Shortens `text` with `…` so that it is at most `max_width` pixels wide at
/// `scale`; text that fits is returned unchanged.
pub fn truncate(text: &str, max_width: u32, scale: u32, mode: Ellipsis) -> String {
    if text_width(text, scale) <= max_width {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let fits = |s: &str| text_width(s, scale) <= max_width;
    let ell = '\u{2026}';
    match mode {
        Ellipsis::End => {
            let mut keep = chars.len();
            while keep > 0 {
                keep -= 1;
                let candidate: String = chars[..keep].iter().chain([&ell]).collect();
                if fits(&candidate) {
                    return candidate;
                }
            }
            ell.to_string()
        }
        Ellipsis::Middle => {
            // Drop characters from the middle outwards, keeping a little more
            // of the start than of the end.
            let mut head = chars.len().div_ceil(2);
            let mut tail = chars.len() - head;
            loop {
                if head == 0 && tail == 0 {
                    return ell.to_string();
                }
                if head >= tail && head > 0 {
                    head -= 1;
                } else {
                    tail -= 1;
                }
                let candidate: String = chars[..head]
                    .iter()
                    .chain([&ell])
                    .chain(&chars[chars.len() - tail..])
                    .collect();
                if fits(&candidate) {
                    return candidate;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{INK, WHITE};

    fn dark_bbox(c: &Canvas) -> Option<(i64, i64, i64, i64)> {
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
    fn text_puts_dark_pixels_inside_its_box() {
        let mut c = Canvas::new(200, 60, WHITE).unwrap();
        let (x, y, s) = (10, 20, 2);
        draw_text(&mut c, x, y, "Layer 3g", s, INK);
        let w = i64::from(text_width("Layer 3g", s));
        let h = i64::from(text_height(s));
        let (x0, y0, x1, y1) = dark_bbox(&c).expect("text drew nothing");
        assert!(x0 >= x && y0 >= y && x1 < x + w && y1 < y + h);
        // The box is tight horizontally: first and last columns are inked.
        assert_eq!((x0, x1), (x, x + w - 1));
        let dark = c.pixels().chunks(3).filter(|p| p == &INK).count();
        assert!(dark > 100, "only {dark} dark pixels");
    }

    #[test]
    fn vertical_text_is_the_rotated_box() {
        let mut c = Canvas::new(60, 200, WHITE).unwrap();
        draw_text_vertical(&mut c, 5, 10, "conv1", 2, INK);
        let w = i64::from(text_width("conv1", 2));
        let (x0, y0, x1, y1) = dark_bbox(&c).expect("text drew nothing");
        assert!(x0 >= 5 && x1 < 5 + 16);
        assert_eq!((y0, y1), (10, 10 + w - 1));
        // First character ('c', no ascender) is at the bottom, last ('1') at
        // the top: the topmost row belongs to the '1'.
        assert!(y1 - y0 > 40);
    }

    #[test]
    fn widths_are_proportional() {
        assert!(text_width("i", 1) < text_width("m", 1));
        assert_eq!(text_width("", 3), 0);
        assert_eq!(text_width("ab", 2), 2 * text_width("ab", 1));
        assert_eq!(text_height(2), 16);
    }

    #[test]
    fn truncation_fits_and_marks_the_cut() {
        let long = "features.12.conv.2.project_output";
        for mode in [Ellipsis::End, Ellipsis::Middle] {
            let t = truncate(long, 80, 1, mode);
            assert!(text_width(&t, 1) <= 80, "{t}");
            assert!(t.contains('\u{2026}'));
        }
        let mid = truncate(long, 120, 1, Ellipsis::Middle);
        assert!(mid.starts_with("feat") && mid.ends_with("output"), "{mid}");
        let end = truncate(long, 120, 1, Ellipsis::End);
        assert!(
            end.starts_with("features.12") && end.ends_with('\u{2026}'),
            "{end}"
        );
        assert_eq!(truncate("short", 500, 2, Ellipsis::End), "short");
        // Nothing fits: the bare ellipsis rather than a panic.
        assert_eq!(truncate("abc", 0, 1, Ellipsis::Middle), "\u{2026}");
    }

    #[test]
    fn unknown_characters_and_greek_draw_something() {
        assert!(columns(&glyph('ρ')).is_some());
        assert!(columns(&glyph('é')).is_some());
        assert_eq!(glyph('\u{4e2d}'), glyph('?'));
        assert_eq!(glyph('\u{2212}'), glyph('-'));
    }
}
