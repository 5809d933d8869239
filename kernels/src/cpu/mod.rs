//! The CPU path: rayon for parallelism, loops over contiguous slices for vectorisation.

pub mod conv;
pub mod elementwise;
pub mod index;
pub mod lstm;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
