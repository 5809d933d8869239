//! One optimizer step's hyperparameters, as the CPU and CUDA update kernels both take them
//! (PyTorch's conventions; see `cpu::optim` for the update rules).

/// SGD with momentum and L2 weight decay. `first_step` starts the momentum buffer at the
/// gradient (PyTorch's convention) instead of blending it in.
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// True on a parameter's first step, when the momentum buffer is still empty.
    pub first_step: bool,
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0 for plain SGD).
    pub momentum: f64,
    /// Dampening of the gradient's share of the momentum buffer.
    pub dampening: f64,
    /// L2 penalty, added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum: step along g + momentum · buf instead of buf.
    pub nesterov: bool,
}

/// Adam / AdamW; `step` counts from 1 (0 is treated as 1), `decoupled` selects AdamW's decay.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// The step number, from 1, for the bias corrections.
    pub step: u64,
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first-moment (mean) average.
    pub beta1: f64,
    /// Decay of the second-moment (uncentred variance) average.
    pub beta2: f64,
    /// Added to the square root in the denominator, for stability.
    pub eps: f64,
    /// Weight decay: an L2 term in the gradient (Adam), or decay of the weights (AdamW).
    pub weight_decay: f64,
    /// AdamW: decay the weights directly rather than through the gradient.
    pub decoupled: bool,
}

/// RMSprop without centering; the momentum buffer exists only when `momentum` is nonzero.
#[derive(Clone, Copy, Debug)]
pub struct RmspropStep {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    /// Added to the square root in the denominator, for stability.
    pub eps: f64,
    /// Momentum factor (0: no momentum buffer).
    pub momentum: f64,
    /// L2 penalty, added to the gradient.
    pub weight_decay: f64,
}
