//! Deterministic test values shared by the kernels' unit tests.

/// `n` values in [-1, 1) from a multiplicative hash of the index, varied by
/// `seed`: no two neighbours alike, no zeros in bulk, the same on every run.
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// The direct definition of a (grouped) convolution over NCHW data, in
/// f64, one output value at a time: the reference of the convolution
/// kernels' tests. `kernel` is `O x I/groups x k_h x k_w`; `bias` holds one
/// value per output channel, or one for all.
pub fn reference_conv(
    s: &crate::model::ConvShape,
    data: &[f32],
    kernel: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    let (per_group_in, per_group_out) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let mut out = vec![0.0f32; s.batch * s.out_channels * s.out_h * s.out_w];
    for b in 0..s.batch {
        for o in 0..s.out_channels {
            let first_in = o / per_group_out * per_group_in;
            for oy in 0..s.out_h {
                for ox in 0..s.out_w {
                    let mut acc = bias[if bias.len() == 1 { 0 } else { o }] as f64;
                    for i in 0..per_group_in {
                        for ky in 0..s.k_h {
                            for kx in 0..s.k_w {
                                let y = (oy * s.stride_h + ky).checked_sub(s.pad_top);
                                let x = (ox * s.stride_w + kx).checked_sub(s.pad_left);
                                let (Some(y), Some(x)) = (y, x) else {
                                    continue;
                                };
                                if y >= s.in_h || x >= s.in_w {
                                    continue;
                                }
                                let c = first_in + i;
                                let v = data[((b * s.in_channels + c) * s.in_h + y) * s.in_w + x];
                                let w = kernel[((o * per_group_in + i) * s.k_h + ky) * s.k_w + kx];
                                acc += w as f64 * v as f64;
                            }
                        }
                    }
                    out[((b * s.out_channels + o) * s.out_h + oy) * s.out_w + ox] = acc as f32;
                }
            }
        }
    }
    out
}
