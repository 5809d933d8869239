//! One optimizer step's hyperparameters, as the CPU and CUDA update kernels both take them
//! (PyTorch's conventions; see `cpu::optim` for the update rules).

/// SGD with momentum and L2 weight decay. `first_step` starts the momentum buffer at the
/// gradient (PyTorch's convention) instead of blending it in.
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    pub first_step: bool,
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

/// Adam / AdamW; `step` counts from 1 (0 is treated as 1), `decoupled` selects AdamW's decay.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub step: u64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
}

/// RMSprop without centering; the momentum buffer exists only when `momentum` is nonzero.
#[derive(Clone, Copy, Debug)]
pub struct RmspropStep {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}
