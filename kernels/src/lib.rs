#![warn(missing_docs)]

//! Compute on raw buffers. `kernels` knows nothing of graphs or tensors: every function takes
//! slices (with shapes and strides where needed) and returns or fills buffers. One module per op
//! family; the CPU implementations live under [`cpu`], the CUDA ones under [`cuda`], and what
//! both take as the description of an op (elementwise kinds, convolution geometry and masks,
//! pooling windows, axis splits) under [`desc`].

pub mod cpu;
pub mod cuda;
pub mod desc;
pub mod float;
pub mod strided;
pub mod vmath;

pub use float::Float;
