//! The CPU path: rayon for parallelism, loops over contiguous slices for vectorisation.

pub mod conv;
pub mod elementwise;
pub mod grid_lstm;
pub mod index;
pub mod loss;
pub mod lstm;
pub mod lstm_sequence;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod scratch;
pub mod shared_rows;
pub mod vector;

/// Runs `f(0)`, ..., `f(n - 1)` in parallel on rayon's pool (each index one task).
pub fn for_each_index_parallel(n: usize, f: impl Fn(usize) + Sync + Send) {
    use rayon::prelude::*;
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
