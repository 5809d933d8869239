//! The CPU path: rayon for parallelism, loops over contiguous slices for vectorisation.

pub mod conv;
pub mod elementwise;
pub mod grid_lstm;
pub mod index;
pub mod loss;
pub mod lstm;
pub mod lstm_sequence;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod parallel;
pub mod pool;
pub mod reduce;
pub mod scratch;
pub mod shared_rows;
pub mod vector;

pub use parallel::{for_each_index_parallel, on_pool};
