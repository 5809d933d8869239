//! What an op computes, described once for every device: the vocabulary that the CPU kernels
//! (`cpu/`) and the CUDA kernels (`cuda/`) both take, and that autograd records in its graph.
//! Nothing here loops over a buffer.
//!
//! Shapes the kernels take as plain numbers (an LSTM cell's batch and hidden sizes, a matmul's
//! m, k, n) stay plain numbers; a description gets a type when it has parts that must agree.

pub mod conv;
pub mod elementwise;
pub mod lstm;
pub mod optim;
pub mod pool;
pub mod reduce;

pub use conv::{conv_out_size, mask_taps, ConvGeometry, Mask};
pub use elementwise::{BinaryKind, UnaryKind};
pub use lstm::{GridPlan, LstmSequenceShape, Sweep};
pub use optim::{AdamStep, RmspropStep, SgdStep};
pub use pool::WindowAxis;
pub use reduce::AxisSplit;
