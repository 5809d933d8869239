#![warn(missing_docs)]

//! A define-by-run reverse-mode autodiff engine.
//!
//! - [`Tensor`]: shape, strides, dtype (f32/f64), device; views share storage.
//! - Every op (in `ops/`) checks its arguments, runs a kernel from the `kernels` crate and, when
//!   an input requires grad, records an [`Op`] naming its inputs.
//! - `backward()` / [`grad`] walk the recorded graph in reverse topological order; the rules in
//!   `backward.rs` are written with Tensor ops, so with `create_graph` gradients are differentiable.
//! - [`nn`] layers and losses, [`optim`] optimizers, [`rng`] seeded sampling, [`dot`] graph export.
//!
//! ```
//! use autograd::{DType, Tensor};
//! # fn main() -> autograd::Result<()> {
//! let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3])?.requires_grad_(true)?;
//! let y = x.sigmoid()?.mul(&x)?.sum_all()?;
//! y.backward()?;
//! let g = x.grad().expect("x is a variable");
//! assert_eq!(g.shape(), &[3]);
//! assert!(y.to_dot().contains("sigmoid"));
//! # let _ = DType::F32;
//! # Ok(())
//! # }
//! ```

mod autodiff;
mod backend;
mod backward;
pub mod device;
pub mod dot;
pub mod dtype;
pub mod error;
pub mod grad_mode;
pub mod layout;
pub mod memory;
pub mod nn;
pub mod op;
mod ops;
pub mod optim;
pub mod rng;
pub mod tensor;

pub use autodiff::grad;
pub use device::{default_device, device_memory, set_default_device, Device, DeviceMemory};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use grad_mode::{is_grad_enabled, no_grad, GradModeGuard};
/// Runs a closure on the engine's thread pool (see `kernels::cpu::on_pool`): a loop that calls
/// parallel ops many times, such as a training loop, runs this way.
pub use kernels::cpu::on_pool;
pub use kernels::desc::{mask_taps, Mask, Sweep};
pub use memory::{host_memory, reset_host_memory_peak, set_host_memory_limit, HostMemory};
pub use op::{CustomBackward, Indices, Op};
pub use ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
pub use rng::Rng;
pub use tensor::{Tensor, TensorId};
