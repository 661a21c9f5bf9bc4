//! Working memory counted against `memory_limit` by the aggregates that
//! hold large groups (`layer_corr`, `layer_corr_block`, `layer_cross`):
//! every live group holds a [`Reservation`] in one process-wide counter per
//! function, and a group that would take all of them past the limit is
//! refused before it allocates.

use std::sync::atomic::{AtomicU64, Ordering};

use super::capi::host::Settings;
use super::error::{Error, Result};

/// Bytes one group has counted in its function's counter.
#[derive(Default)]
pub struct Reservation {
    bytes: u64,
    counter: Option<&'static AtomicU64>,
}

impl Reservation {
    /// Raises this group's count to `need` bytes, or refuses with a message
    /// that starts with `what` when all groups together would pass
    /// `memory_limit`.
    pub fn reserve(
        &mut self,
        counter: &'static AtomicU64,
        need: u64,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        self.counter = Some(counter);
        if need <= self.bytes {
            return Ok(());
        }
        let limit = Settings::latest().memory_limit;
        let others = self.others(counter);
        if need.saturating_add(others) > limit {
            let with_others = if others > 0 {
                format!(" (other groups in progress hold {others} bytes)")
            } else {
                String::new()
            };
            return Err(Error::Host(format!(
                "{} needs {need} bytes of working memory{with_others}, above memory_limit ({limit} bytes); raise memory_limit or make the group smaller",
                what()
            )));
        }
        counter.fetch_add(need - self.bytes, Ordering::Relaxed);
        self.bytes = need;
        Ok(())
    }

    /// Whether raising this group's count to `need` bytes would keep all
    /// groups of `counter` within `limit` bytes.
    pub fn fits(&self, counter: &AtomicU64, need: u64, limit: u64) -> bool {
        need.max(self.bytes).saturating_add(self.others(counter)) <= limit
    }

    /// What the other groups of `counter` have counted.
    fn others(&self, counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed).saturating_sub(self.bytes)
    }

    /// Lowers this group's count to `need` bytes if it is above.
    pub fn lower_to(&mut self, need: u64) {
        if let (Some(c), true) = (self.counter, need < self.bytes) {
            c.fetch_sub(self.bytes - need, Ordering::Relaxed);
            self.bytes = need;
        }
    }

    /// Raises this group's count by `extra` bytes, as [`Reservation::reserve`].
    pub fn grow(
        &mut self,
        counter: &'static AtomicU64,
        extra: u64,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        self.reserve(counter, self.bytes.saturating_add(extra), what)
    }

    /// Bytes this group has counted.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Moves `other`'s count into this one (a combine).
    pub fn absorb(&mut self, other: &mut Reservation) {
        if self.counter.is_none() {
            self.counter = other.counter;
        }
        match (self.counter, other.counter) {
            (Some(a), Some(b)) if std::ptr::eq(a, b) => {
                self.bytes += std::mem::take(&mut other.bytes);
            }
            _ => other.release(),
        }
    }

    /// Gives the count back.
    pub fn release(&mut self) {
        if let Some(c) = self.counter {
            c.fetch_sub(std::mem::take(&mut self.bytes), Ordering::Relaxed);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}
