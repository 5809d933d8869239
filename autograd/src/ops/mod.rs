//! Every op's forward: argument checks, dispatch to `kernels`, and recording of the `Op`.
//! One file per op family; the backward rules are in `crate::backward`.

mod binary;
mod index;
mod matmul;
mod reduce;
mod shape;
mod unary;
