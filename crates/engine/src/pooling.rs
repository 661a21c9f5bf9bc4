//! Spatial pooling of activations at capture time.
//!
//! Early layers are large (EfficientNet's stem: 32 x 112 x 112 = 401,408
//! values, 1.6 MB per image); averaging or taking the maximum over space,
//! globally or on a coarse grid, keeps the channel structure that the
//! correlation analysis looks at while cutting memory by orders of
//! magnitude. Applies to `[C, H, W]` activations, or `[H, W, C]` for a
//! layer laid out channels last (the `input` of an NHWC model), which
//! pools to `[K, K, C]`; other shapes pass through unchanged. Grid bins follow PyTorch's adaptive pooling
//! (`start = floor(i H / k)`, `end = ceil((i + 1) H / k)`) for every grid
//! size, larger than the map included (bins then overlap and repeat
//! values), so results match `adaptive_avg_pool2d` / `adaptive_max_pool2d`
//! with output size `k`.

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

/// The largest grid side accepted: a grid is an output size, so a larger
/// one would allocate `C * K * K` values per image from a typo.
pub const MAX_POOL_GRID: usize = 4096;

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
            if a != b {
                return Err(bad());
            }
            if a == 0 || a > MAX_POOL_GRID {
                return Err(format!(
                    "pooling '{text}' has a grid of {a}x{a}; the grid side must be 1 to {MAX_POOL_GRID}"
                ));
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
    /// [`Pooling::apply`] for a layer laid out channels first
    /// (`channels_last == false`: `[C, H, W]`) or last (`[H, W, C]`, pooled
    /// to `[K, K, C]`).
    pub fn apply_laid_out(&self, values: Vec<f32>, shape: &[i64], channels_last: bool) -> Vec<f32> {
        let [h, w, c] = match shape {
            [h, w, c] if channels_last && *c > 0 && *h > 0 && *w > 0 => {
                [*h as usize, *w as usize, *c as usize]
            }
            _ => return self.apply(values, shape),
        };
        if *self == Pooling::None
            || c.checked_mul(h).and_then(|v| v.checked_mul(w)) != Some(values.len())
        {
            return values;
        }
        let mut planar = vec![0f32; values.len()];
        for (i, px) in values.chunks_exact(c).enumerate() {
            for (ch, v) in px.iter().enumerate() {
                planar[ch * h * w + i] = *v;
            }
        }
        let pooled = self.apply(planar, &[c as i64, h as i64, w as i64]);
        let cells = pooled.len() / c;
        let mut out = vec![0f32; pooled.len()];
        for (ch, plane) in pooled.chunks_exact(cells).enumerate() {
            for (i, v) in plane.iter().enumerate() {
                out[i * c + ch] = *v;
            }
        }
        out
    }

    /// [`Pooling::shape`] for a layer laid out channels first or last.
    pub fn shape_laid_out(&self, shape: &[i64], channels_last: bool) -> Vec<i64> {
        match (*self, shape) {
            (Pooling::Avg(k) | Pooling::Max(k), [h, w, c])
                if channels_last && k > 0 && *c > 0 && *h > 0 && *w > 0 =>
            {
                vec![k as i64, k as i64, *c]
            }
            _ => self.shape(shape),
        }
    }

    /// Pools `values` of per-image `shape` to `[C, K, K]`; returns them
    /// unchanged when pooling is off or the shape is not `[C, H, W]` with
    /// `C * H * W` values.
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
        if k == 0 || c.checked_mul(h).and_then(|v| v.checked_mul(w)) != Some(values.len()) {
            return values;
        }
        // PyTorch's bin of output index `i` over an axis of `n` inputs.
        let bin = |i: usize, n: usize| (i * n / k, ((i + 1) * n).div_ceil(k));
        let mut out = Vec::with_capacity(c * k * k);
        for plane in values.chunks_exact(h * w) {
            for i in 0..k {
                let (y0, y1) = bin(i, h);
                for j in 0..k {
                    let (x0, x1) = bin(j, w);
                    let rows = (y0..y1).map(|y| &plane[y * w + x0..y * w + x1]);
                    let value = if is_max {
                        rows.flatten().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
                    } else {
                        let sum: f64 = rows.flatten().map(|&v| f64::from(v)).sum();
                        (sum / ((y1 - y0) * (x1 - x0)) as f64) as f32
                    };
                    out.push(value);
                }
            }
        }
        out
    }

    /// The per-image shape after pooling.
    pub fn shape(&self, shape: &[i64]) -> Vec<i64> {
        match (*self, shape) {
            (Pooling::Avg(k) | Pooling::Max(k), [c, h, w])
                if k > 0 && *c > 0 && *h > 0 && *w > 0 =>
            {
                vec![*c, k as i64, k as i64]
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
        // Vectors pass through.
        assert_eq!(Pooling::Avg(1).apply(vec![1.0, 2.0], &[2]), vec![1.0, 2.0]);
        // A grid as large as the map is the identity.
        assert_eq!(Pooling::Avg(3).apply(v.clone(), &[2, 3, 3]), v);
    }

    #[test]
    fn grid_larger_than_the_map_follows_pytorch() {
        // torch.nn.functional.adaptive_avg_pool2d(x, 3) on one 2 x 2 map
        // [[0, 1], [2, 3]]: bin i spans [floor(2i/3), ceil(2(i+1)/3)), so
        // rows {0}, {0, 1}, {1}, and the same for columns.
        let v = vec![0.0, 1.0, 2.0, 3.0];
        assert_eq!(
            Pooling::Avg(3).apply(v.clone(), &[1, 2, 2]),
            vec![0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0]
        );
        assert_eq!(
            Pooling::Max(3).apply(v.clone(), &[1, 2, 2]),
            vec![0.0, 1.0, 1.0, 2.0, 3.0, 3.0, 2.0, 3.0, 3.0]
        );
        assert_eq!(Pooling::Avg(3).shape(&[1, 2, 2]), vec![1, 3, 3]);
        // 113 on a 112 x 112 map is not a no-op: 113 x 113 values per channel.
        let map: Vec<f32> = (0..2 * 112 * 112).map(|x| x as f32).collect();
        let pooled = Pooling::Avg(113).apply(map, &[2, 112, 112]);
        assert_eq!(pooled.len(), 2 * 113 * 113);
        assert_eq!(Pooling::Avg(113).shape(&[2, 112, 112]), vec![2, 113, 113]);
        // Non-square maps: a 3-wide grid over 1 x 5 (rows all {0}).
        let row = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        // Columns: [0,2), [1,4), [3,5) -> 1.5, 3, 4.5.
        assert_eq!(
            Pooling::Avg(3).apply(row, &[1, 1, 5]),
            vec![1.5, 3.0, 4.5, 1.5, 3.0, 4.5, 1.5, 3.0, 4.5]
        );
    }

    #[test]
    fn grid_smaller_than_the_map_follows_pytorch() {
        // adaptive_avg_pool2d(arange(25).view(1, 1, 5, 5), 2): rows and
        // columns [0,3) and [2,5).
        let v: Vec<f32> = (0..25).map(|x| x as f32).collect();
        // Bin (0,0): rows 0..3, cols 0..3: mean of {0,1,2,5,6,7,10,11,12} = 6.
        // Bin (0,1): cols 2..5: mean of {2,3,4,7,8,9,12,13,14} = 8.
        // Bin (1,0): rows 2..5: 16; bin (1,1): 18.
        assert_eq!(
            Pooling::Avg(2).apply(v.clone(), &[1, 5, 5]),
            vec![6.0, 8.0, 16.0, 18.0]
        );
        assert_eq!(
            Pooling::Max(2).apply(v, &[1, 5, 5]),
            vec![12.0, 14.0, 22.0, 24.0]
        );
    }

    #[test]
    fn channels_last_layers_pool_height_and_width() {
        // A 2 x 3 image with 3 channels, [H, W, C]: channel c of pixel i
        // is 10 * c + i.
        let hwc: Vec<f32> = (0..6)
            .flat_map(|i| (0..3).map(move |c| (10 * c + i) as f32))
            .collect();
        let means = Pooling::Avg(1).apply_laid_out(hwc.clone(), &[2, 3, 3], true);
        assert_eq!(means, vec![2.5, 12.5, 22.5]);
        assert_eq!(
            Pooling::Avg(1).shape_laid_out(&[2, 3, 3], true),
            vec![1, 1, 3]
        );
        let maxima = Pooling::Max(1).apply_laid_out(hwc.clone(), &[2, 3, 3], true);
        assert_eq!(maxima, vec![5.0, 15.0, 25.0]);
        // A 2x2 grid keeps channels last: cell (0, 1) is columns [1, 3) of row 0.
        let grid = Pooling::Avg(2).apply_laid_out(hwc.clone(), &[2, 3, 3], true);
        assert_eq!(grid.len(), 12);
        assert_eq!(&grid[3..6], &[1.5, 11.5, 21.5]);
        // Channels first is the plain apply.
        assert_eq!(
            Pooling::Avg(1).apply_laid_out(hwc.clone(), &[2, 3, 3], false),
            Pooling::Avg(1).apply(hwc, &[2, 3, 3])
        );
    }

    #[test]
    fn zero_and_huge_grids_are_errors_naming_the_value() {
        let err = "avg0x0".parse::<Pooling>().unwrap_err();
        assert!(err.contains("'avg0x0'") && err.contains("0x0"), "{err}");
        let err = "max5000x5000".parse::<Pooling>().unwrap_err();
        assert!(err.contains("5000x5000") && err.contains("4096"), "{err}");
        assert_eq!(
            "avg4096x4096".parse::<Pooling>().unwrap(),
            Pooling::Avg(4096)
        );
    }
}
