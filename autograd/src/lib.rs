#![warn(missing_docs)]

//! A define-by-run reverse-mode autodiff engine: [`Tensor`], the graph its ops record, the
//! backward walk over that graph (to any order), [`nn`] layers and losses, [`optim`] optimizers,
//! [`rng`] seeded sampling and [`dot`] graph export. This page explains how the engine works,
//! in the order a training step meets it, on this example:
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
//!
//! # The forward pass records the graph
//!
//! A [`Tensor`] is a cheap handle (an `Arc`) to its storage, a [`layout::Layout`] (shape,
//! strides, offset), a [`DType`] and a [`Device`]. Each op (`ops/`, one file per family) checks
//! its arguments, runs a kernel of the `kernels` crate through the backend seam (below) and
//! wraps the new storage with `Tensor::from_op_result`, or with `Tensor::from_op_storage` for a
//! view. That is where the graph is built: the new tensor keeps an [`Op`] (`op.rs`), which holds
//! handles to its inputs and whatever the backward rule needs (axes, indices, a convolution's
//! geometry), but only when grad mode is on ([`is_grad_enabled`], [`no_grad`]) and some input
//! [`Tensor::requires_grad`]; otherwise the result is a plain leaf and no graph is kept.
//!
//! There is no separate graph object: the graph is the web of handles from outputs to inputs,
//! built as the program runs (define-by-run, so ordinary Rust `if`s and loops shape it) and
//! freed when the last handle to an output is dropped. The leaves that gradients are wanted for
//! are the variables marked with [`Tensor::requires_grad_`]; an op's output requires grad
//! exactly when it recorded an op. [`Tensor::to_dot`] draws what was recorded.
//!
//! # The reverse walk
//!
//! [`Tensor::backward`] (in `autodiff.rs`) seeds the output's gradient with ones (it must be a
//! scalar; [`Tensor::backward_with`] takes any output and its gradient) and orders the graph:
//! an iterative depth-first search from the output over the tensors that require grad gives a
//! topological order, every tensor after the inputs it was made from. Walking that order in
//! reverse, each tensor is visited after every tensor that used it, so by then its gradient is
//! complete; its op's rule in `backward.rs` maps that gradient to one for each input, and the
//! walk moves on. The rule of a broadcast op sums the gradient back to the input's shape.
//!
//! # Accumulation where paths meet
//!
//! A tensor used twice, as `x` in `x.sigmoid()?.mul(&x)?`, gets a gradient along each path; the
//! walk adds them (a map from [`TensorId`] to the running sum, with [`Tensor::add`]) before it
//! visits the tensor. At the end each reachable variable's gradient is added to its
//! [`Tensor::grad`], so two backward passes sum their gradients until [`Tensor::zero_grad`]
//! (or [`nn::Module::zero_grad`], or an optimizer's) clears them. [`grad`] returns the gradients
//! of the tensors asked for instead, leaving `.grad()` alone; it and [`Tensor::backward_into`]
//! differentiate only the ops through which a gradient reaches the tensors asked for, so a
//! GAN's generator step does not pay for the discriminator's weight gradients.
//!
//! # Gradients of gradients
//!
//! Every rule in `backward.rs` is written with ordinary Tensor ops. The walk runs under a
//! [`GradModeGuard`] set to `create_graph`: without it the rules' ops record nothing (a plain
//! backward builds no graph), with it ([`grad`]'s last argument, or
//! [`Tensor::backward_create_graph`]) they are recorded like any forward op, so the gradients
//! are themselves outputs of a graph and can be differentiated again (WGAN-GP's gradient
//! penalty). The three convolution ops are closed under this: each one's gradients are the
//! other two. The LSTM cell's rule runs its fused kernel in a plain backward and Tensor ops
//! under `create_graph`. A user-defined op ([`Tensor::from_custom_op`], [`CustomBackward`])
//! brings its own rule.
//!
//! ```
//! # use autograd::{grad, Tensor};
//! # fn main() -> autograd::Result<()> {
//! let x = Tensor::from_vec(vec![1.5f64], &[1])?.requires_grad_(true)?;
//! let y = x.powf(3.0)?.sum_all()?;
//! // dy/dx = 3x², recorded because create_graph is true
//! let dy = grad(&[y], &[], &[x.clone()], true)?[0].clone().expect("y depends on x");
//! assert_eq!(dy.to_vec_f64(), [6.75]);
//! // d²y/dx² = 6x, by differentiating the gradient
//! let d2y = grad(&[dy.sum_all()?], &[], &[x], false)?[0].clone().expect("dy depends on x");
//! assert_eq!(d2y.to_vec_f64(), [9.0]);
//! # Ok(())
//! # }
//! ```
//!
//! # Views and copy-on-write
//!
//! reshape of contiguous data, permute, transpose, narrow, expand, squeeze and unsqueeze are
//! views: a new [`layout::Layout`] over the same storage (an `Arc` shared by every view), a new
//! node of the graph with its own [`TensorId`], recorded as an op like any other, and no copy.
//! Each op hands the backend its operands with their layouts: elementwise ops read broadcasts
//! through stride 0 and matmul reads any row and column strides, while some other kernels gather
//! a contiguous copy first. [`Tensor::contiguous`] copies explicitly, as does a reshape that
//! cannot be a view.
//!
//! Ops never write into their inputs: each computes into new storage (or, for a view, shares
//! its input's). Storage is written in place only by the optimizers' steps,
//! [`Tensor::update_data`] (initialisers, running statistics) and [`Tensor::copy_from`] (weight
//! loading), and only for a whole, contiguous tensor (a parameter); a view is refused with an
//! error. If a view or a [`Tensor::detach`]ed handle still shares the storage, the storage is
//! copied first (`Arc::make_mut`): the parameter gets the new values, the view keeps the old
//! ones. Handles cloned from the parameter itself are the same node and see the update. This is
//! why a Linear layer's matmul reads its weight in place (`Op::MatmulT`) rather than through a
//! transposed view: a view kept in the graph would make every optimizer step copy the weight.
//!
//! ```
//! # use autograd::Tensor;
//! # fn main() -> autograd::Result<()> {
//! let w = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3])?;
//! let head = w.narrow(0, 0, 2)?; // a view: same storage, another layout
//! w.update_data::<f64>(|d| d[0] = 10.0)?; // copies first, as `head` shares the storage
//! assert_eq!(w.to_vec_f64(), [10.0, 2.0, 3.0]);
//! assert_eq!(head.to_vec_f64(), [1.0, 2.0]);
//! assert!(head.update_data::<f64>(|d| d[0] = 0.0).is_err()); // not a whole tensor
//! # Ok(())
//! # }
//! ```
//!
//! # The backend seam
//!
//! A tensor's elements live in a `Storage` (`backend/`): an enum with one arm per device, each
//! arm implementing one trait, the list of op families every device provides. `Storage`'s
//! methods are the one place that picks the kernel by device: the CPU arm calls `kernels::cpu`,
//! the CUDA arm (a GPU, or the emulated device that runs the same kernels on the host) calls
//! `kernels::cuda`. Ops follow their inputs ([`Tensor::to_device`], [`set_default_device`]);
//! operands on different devices are an error naming the op. The graph, the rules and the
//! layers above are written once against [`Tensor`], whatever the device.

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
pub mod profiler;
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
