//! Compute on raw buffers. `kernels` knows nothing of graphs or tensors: every function takes
//! slices (with shapes and strides where needed) and returns or fills buffers. One module per op
//! family; the CPU implementations live under [`cpu`].

pub mod cpu;
pub mod cuda;
pub mod float;
pub mod strided;
pub mod vmath;

pub use float::Float;
