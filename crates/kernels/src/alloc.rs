//! Fallible allocation.
//!
//! Buffers here grow with the user's data (`n` rows, `n²` results), and
//! inside a DuckDB host a failed allocation must be an error, not an abort
//! of the user's process. So every buffer whose size grows with the data is
//! allocated through [`try_zeroed_vec`] or [`try_with_capacity`] (or a
//! `try_reserve` beside the code), and every `n * n` goes through
//! [`square_len`]. How much a whole group will need is [`crate::memory`]'s
//! business.

use crate::error::{KernelError, Result};

/// `len` values of `T` in bytes, saturating at `u64::MAX`.
pub(crate) fn bytes_of<T>(len: usize) -> u64 {
    (len as u64).saturating_mul(std::mem::size_of::<T>() as u64)
}

/// A zero-filled (`T::default()`) vector of `len` values, or
/// [`KernelError::TooLarge`] naming `what` instead of aborting the host
/// process when the memory is not there.
pub fn try_zeroed_vec<T: Clone + Default>(len: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(len, what)?;
    v.resize(len, T::default());
    Ok(v)
}

/// An empty vector with room for exactly `len` values, or
/// [`KernelError::TooLarge`] naming `what`.
pub fn try_with_capacity<T>(len: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| KernelError::TooLarge {
            what,
            bytes: bytes_of::<T>(len),
        })?;
    Ok(v)
}

/// `n * n`, or [`KernelError::TooLarge`] (with `u64::MAX` bytes) naming
/// `what` if it does not fit in a `usize`.
pub fn square_len(n: usize, what: &'static str) -> Result<usize> {
    n.checked_mul(n).ok_or(KernelError::TooLarge {
        what,
        bytes: u64::MAX,
    })
}

/// The first `len` values of `v`, grown (zero-filled, fallibly) if it is
/// shorter; what was there before is left for the caller to overwrite.
/// For working buffers kept between calls.
pub(crate) fn at_least<'a, T: Copy + Default>(
    v: &'a mut Vec<T>,
    len: usize,
    what: &'static str,
) -> Result<&'a mut [T]> {
    if v.len() < len {
        v.try_reserve_exact(len - v.len())
            .map_err(|_| KernelError::TooLarge {
                what,
                bytes: bytes_of::<T>(len),
            })?;
        v.resize(len, T::default());
    }
    Ok(&mut v[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors() {
        let e = square_len(1 << 40, "x").unwrap_err();
        assert_eq!(
            e,
            KernelError::TooLarge {
                what: "x",
                bytes: u64::MAX
            }
        );
        assert_eq!(square_len(3, "x").unwrap(), 9);
        let e = try_zeroed_vec::<f64>(usize::MAX / 4, "test buffer").unwrap_err();
        assert!(
            e.to_string().starts_with("cannot allocate ")
                && e.to_string().ends_with(" bytes for test buffer"),
            "{e}"
        );
        assert!(try_with_capacity::<u8>(usize::MAX, "x").is_err());
        assert_eq!(try_zeroed_vec::<f32>(3, "x").unwrap(), vec![0.0; 3]);
        // n² f64 for n = 2^31 is 32 EiB: refused, reported, no abort.
        let n = 1usize << 31;
        let e = try_zeroed_vec::<f64>(n.saturating_mul(n), "test").unwrap_err();
        assert!(matches!(e, KernelError::TooLarge { .. }), "{e:?}");
        let mut v: Vec<f32> = vec![1.0; 2];
        assert_eq!(at_least(&mut v, 3, "x").unwrap(), &[1.0, 1.0, 0.0]);
        assert_eq!(at_least(&mut v, 1, "x").unwrap(), &[1.0]);
    }
}
