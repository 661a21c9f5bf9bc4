//! Spatial pooling of activations at capture time.
//!
//! Early layers are large (EfficientNet's stem: 32 x 112 x 112 = 401,408
//! values, 1.6 MB per image); averaging or taking the maximum over space,
//! globally or on a coarse grid, keeps the channel structure that the
//! correlation analysis looks at while cutting memory by orders of
//! magnitude. Applies to `[C, H, W]` activations; other shapes pass
//! through unchanged. Grid bins follow PyTorch's adaptive pooling
//! (`start = floor(i H / k)`, `end = ceil((i + 1) H / k)`), so results match
//! `adaptive_avg_pool2d` / `adaptive_max_pool2d`.

use std::fmt;
use std::str::FromStr;

/// How activations are pooled over their spatial axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Keep every value.
    #[default]
    None,
    /// Mean over each bin of a `k x k` grid (`k = 1`: global average).
    Avg(usize),
    /// Maximum over each bin of a `k x k` grid (`k = 1`: global maximum).
    Max(usize),
}

/// The pooling names accepted in SQL.
pub const POOLING_NAMES: &str = "none, avg, max, avgKxK, maxKxK (e.g. avg2x2)";

impl FromStr for Pooling {
    type Err = String;

    fn from_str(text: &str) -> Result<Pooling, String> {
        let lower = text.trim().to_ascii_lowercase();
        let bad = || format!("unknown pooling '{text}'; valid: {POOLING_NAMES}");
        let grid = |rest: &str| -> Result<usize, String> {
            if rest.is_empty() {
                return Ok(1);
            }
            let (a, b) = rest.split_once('x').ok_or_else(bad)?;
            let (a, b) = (
                a.parse::<usize>().map_err(|_| bad())?,
                b.parse::<usize>().map_err(|_| bad())?,
            );
            if a != b || a == 0 {
                return Err(bad());
            }
            Ok(a)
        };
        match lower.as_str() {
            "none" | "" => Ok(Pooling::None),
            s if s.starts_with("avg") => Ok(Pooling::Avg(grid(&s[3..])?)),
            s if s.starts_with("max") => Ok(Pooling::Max(grid(&s[3..])?)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pooling::None => f.write_str("none"),
            Pooling::Avg(1) => f.write_str("avg"),
            Pooling::Max(1) => f.write_str("max"),
            Pooling::Avg(k) => write!(f, "avg{k}x{k}"),
            Pooling::Max(k) => write!(f, "max{k}x{k}"),
        }
    }
}

impl Pooling {
    /// Pools `values` of per-image `shape`; returns them unchanged when
    /// pooling is off, the shape is not `[C, H, W]`, or the grid is not
    /// smaller than the map.
    pub fn apply(&self, values: Vec<f32>, shape: &[i64]) -> Vec<f32> {
        let (k, is_max) = match *self {
            Pooling::None => return values,
            Pooling::Avg(k) => (k, false),
            Pooling::Max(k) => (k, true),
        };
        let [c, h, w] = match shape {
            [c, h, w] if *c > 0 && *h > 0 && *w > 0 => [*c as usize, *h as usize, *w as usize],
            _ => return values,
        };
        if values.len() != c * h * w || (k >= h && k >= w && h * w <= k * k) {
            return values;
        }
        let (kh, kw) = (k.min(h), k.min(w));
        let mut out = Vec::with_capacity(c * kh * kw);
        for plane in values.chunks_exact(h * w) {
            for i in 0..kh {
                let (y0, y1) = (i * h / kh, ((i + 1) * h).div_ceil(kh));
                for j in 0..kw {
                    let (x0, x1) = (j * w / kw, ((j + 1) * w).div_ceil(kw));
                    let mut acc = if is_max { f32::NEG_INFINITY } else { 0.0 };
                    let mut sum = 0f64;
                    for y in y0..y1 {
                        for &v in &plane[y * w + x0..y * w + x1] {
                            if is_max {
                                acc = acc.max(v);
                            } else {
                                sum += f64::from(v);
                            }
                        }
                    }
                    if !is_max {
                        acc = (sum / ((y1 - y0) * (x1 - x0)) as f64) as f32;
                    }
                    out.push(acc);
                }
            }
        }
        out
    }

    /// The per-image shape after pooling.
    pub fn shape(&self, shape: &[i64]) -> Vec<i64> {
        match (*self, shape) {
            (Pooling::Avg(k) | Pooling::Max(k), [c, h, w]) if *h > 0 && *w > 0 => {
                let k = k as i64;
                if k >= *h && k >= *w && h * w <= k * k {
                    shape.to_vec()
                } else {
                    vec![*c, k.min(*h), k.min(*w)]
                }
            }
            _ => shape.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!("none".parse::<Pooling>().unwrap(), Pooling::None);
        assert_eq!("AVG".parse::<Pooling>().unwrap(), Pooling::Avg(1));
        assert_eq!("max3x3".parse::<Pooling>().unwrap(), Pooling::Max(3));
        let err = "avg2x3".parse::<Pooling>().unwrap_err();
        assert!(err.contains("'avg2x3'") && err.contains("avgKxK"), "{err}");
        assert!("median".parse::<Pooling>().is_err());
    }

    #[test]
    fn global_and_grid_pooling_match_hand_computation() {
        // Two channels of 3 x 3.
        let v: Vec<f32> = (0..18).map(|x| x as f32).collect();
        assert_eq!(
            Pooling::Avg(1).apply(v.clone(), &[2, 3, 3]),
            vec![4.0, 13.0]
        );
        assert_eq!(
            Pooling::Max(1).apply(v.clone(), &[2, 3, 3]),
            vec![8.0, 17.0]
        );
        // Adaptive 2x2 on 3x3: bins rows {0,1},{1,2} and cols {0,1},{1,2}.
        let pooled = Pooling::Avg(2).apply(v.clone(), &[2, 3, 3]);
        assert_eq!(&pooled[..4], &[2.0, 3.0, 5.0, 6.0]);
        assert_eq!(Pooling::Avg(2).shape(&[2, 3, 3]), vec![2, 2, 2]);
        // Vectors and grids as large as the map pass through.
        assert_eq!(Pooling::Avg(1).apply(vec![1.0, 2.0], &[2]), vec![1.0, 2.0]);
        assert_eq!(Pooling::Avg(4).apply(v.clone(), &[2, 3, 3]), v);
    }
}
