//! Deterministic test values shared by the kernels' unit tests.

/// `n` values in [-1, 1) from a multiplicative hash of the index, varied by
/// `seed`: no two neighbours alike, no zeros in bulk, the same on every run.
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}
