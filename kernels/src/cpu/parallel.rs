//! When a loop goes parallel: one policy for every CPU kernel.
//!
//! Handing work to rayon's pool and waiting for it costs a few microseconds (more when the
//! threads have to wake up); below about 20 µs of work one thread finishes first. Each kernel
//! states what one item of its work costs on one core (measured on the 2-core VM the kernels
//! were tuned on, AVX-512) and asks [`worth_splitting`].

use rayon::prelude::*;

/// Work below this many nanoseconds stays on one thread.
pub const MIN_PARALLEL_NS: f64 = 20_480.0;

/// What one item costs, in nanoseconds on one core.
pub mod cost {
    /// One element of an elementwise map, a reduction or an optimizer update.
    pub const ELEMENT_NS: f64 = 0.625;
    /// One hidden unit of the fused LSTM cell (five transcendental functions).
    pub const LSTM_UNIT_NS: f64 = 2.5;
    /// One multiply-add of a packed matrix product (about 200 GFLOP/s on one core); a 160^3
    /// product takes as long on one core as the hand-over costs, at 192^3 two threads win.
    pub const MULTIPLY_ADD_NS: f64 = super::MIN_PARALLEL_NS / (1u64 << 22) as f64;
}

/// True when `items` of work costing `ns_per_item` each are worth splitting across threads.
///
/// Under Miri every loop of 2 or more items splits: the shapes Miri can afford are far below
/// the thresholds, and without this they would all run on one thread, so that Miri's
/// data-race detector would never see threads share a buffer (`scripts/miri.sh`).
#[inline]
pub fn worth_splitting(items: usize, ns_per_item: f64) -> bool {
    if cfg!(miri) {
        return items >= 2;
    }
    items as f64 * ns_per_item >= MIN_PARALLEL_NS
}

/// Runs `f(0)`, ..., `f(n - 1)` in parallel on rayon's pool (each index one task).
pub fn for_each_index_parallel(n: usize, f: impl Fn(usize) + Sync + Send) {
    (0..n).into_par_iter().for_each(f);
}

/// Runs `f` on a thread of rayon's pool and returns its result. A loop that calls parallel
/// kernels many times (a training loop, an LSTM over a sequence) should run this way: called
/// from outside the pool, each parallel call is handed over to the pool while the caller sleeps
/// until it is done; called from a pool thread, the caller splits the work with the other
/// threads and takes its own share at once. Thread-local state (autograd's grad mode) is the
/// pool thread's inside `f`.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    use super::{cost, worth_splitting};

    #[test]
    #[cfg_attr(miri, ignore = "under Miri every loop of 2 or more items splits")]
    fn the_thresholds_the_kernels_were_tuned_with() {
        assert!(!worth_splitting((1 << 15) - 1, cost::ELEMENT_NS));
        assert!(worth_splitting(1 << 15, cost::ELEMENT_NS));
        assert!(!worth_splitting(8191, cost::LSTM_UNIT_NS));
        assert!(worth_splitting(8192, cost::LSTM_UNIT_NS));
        assert!(!worth_splitting((1 << 22) - 1, cost::MULTIPLY_ADD_NS));
        assert!(worth_splitting(1 << 22, cost::MULTIPLY_ADD_NS));
    }
}
