//! The PixelRNN recurrence now lives in the engine (`Tensor::grid_lstm`, its kernels in
//! `kernels::cpu::grid_lstm`); these forwarders keep `pixel_rnn`'s imports working until it
//! calls the engine directly.

use autograd::{Result, Tensor};

pub use autograd::Sweep;

/// [`Tensor::grid_lstm`].
pub fn grid_lstm(pre: &Tensor, w: &Tensor, sweep: Sweep) -> Result<Tensor> {
    Tensor::grid_lstm(pre, w, sweep)
}

/// [`Tensor::shift`].
pub(crate) fn shift(x: &Tensor, axis: usize, by: isize) -> Result<Tensor> {
    x.shift(axis, by)
}
