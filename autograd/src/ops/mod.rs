//! Every op's forward: argument checks, dispatch to `kernels`, and recording of the `Op`.
//! One file per op family; the backward rules are in `crate::backward`.

mod binary;
pub mod conv;
mod grid_lstm;
mod index;
pub(crate) mod lstm;
mod matmul;
mod pad;
mod pool;
mod reduce;
mod shape;
mod unary;
mod upsample;
