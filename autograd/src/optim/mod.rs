//! Optimizers: [`Sgd`] (momentum, dampening, Nesterov, L2 weight decay), [`Adam`] (L2 weight
//! decay, or AdamW's decoupled decay with [`AdamConfig::adamw`]) and [`RmsProp`].
//!
//! Each follows PyTorch's update rule exactly (the fused in-place kernels are in
//! `kernels::cpu::optim`, checked against PyTorch by `tests/tests/optim_vs_torch.rs`) and
//! updates its parameters in place on their device (copy-on-write, like [`Tensor::update_data`]:
//! a view that still shares a parameter's storage keeps the old values), in f32 or f64.
//!
//! - A parameter without a gradient is skipped: no update, and its state (step count, moment
//!   buffers) does not advance, as in PyTorch.
//! - State is per parameter and named after it, with PyTorch's keys: "fc1.weight.step",
//!   "fc1.weight.exp_avg", "fc1.weight.exp_avg_sq", "fc1.weight.momentum_buffer",
//!   "fc1.weight.square_avg". [`Optimizer::state_tensors`] exports it (the step as an f64
//!   scalar), [`Optimizer::load_state`] imports it, so a checkpoint can resume training exactly.
//!
//! ```
//! use autograd::optim::{Adam, AdamConfig, Optimizer};
//! use autograd::Tensor;
//!
//! let w = Tensor::from_vec(vec![1.0f64, -2.0], &[2]).unwrap().requires_grad_(true).unwrap();
//! let mut opt = Adam::new(vec![("w".to_string(), w.clone())], AdamConfig { lr: 0.1, ..Default::default() }).unwrap();
//! for _ in 0..3 {
//!     opt.zero_grad();
//!     w.square().unwrap().sum_all().unwrap().backward().unwrap();
//!     opt.step().unwrap();
//! }
//! assert!(w.to_vec_f64().iter().all(|v| v.abs() < 2.0));
//! ```

pub mod adam;
pub mod rmsprop;
pub mod sgd;

pub use adam::{Adam, AdamConfig};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use sgd::{Sgd, SgdConfig};

use crate::backend::Storage;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::tensor::{Tensor, TensorId};
use std::collections::{HashMap, HashSet};

/// What every optimizer offers.
pub trait Optimizer {
    /// One update of every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;

    /// One step down `loss`: clears the gradients, backpropagates into this optimizer's
    /// parameters only ([`Tensor::backward_into`]: gradients that would reach only other
    /// leaves are not computed, and those leaves' `.grad()` is left alone), and updates them.
    fn minimize(&mut self, loss: &Tensor) -> Result<()> {
        self.zero_grad();
        let params: Vec<Tensor> = self.params().iter().map(|(_, p)| p.clone()).collect();
        loss.backward_into(&params)?;
        self.step()
    }

    /// Clears every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`).
    fn zero_grad(&self) {
        for (_, p) in self.params() {
            p.zero_grad();
        }
    }

    /// The optimized parameters and their names.
    fn params(&self) -> &[(String, Tensor)];

    /// The current learning rate.
    fn lr(&self) -> f64;

    /// Changes the learning rate (for schedules). Errors unless lr is finite and >= 0.
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// The optimizer's state as named tensors: "{param}.step" (an f64 scalar) and
    /// "{param}.{buffer}" (shaped like the parameter) for every parameter that has state.
    fn state_tensors(&self) -> Vec<(String, Tensor)>;

    /// Restores state exported by [`Optimizer::state_tensors`] from an optimizer of the same
    /// kind over parameters of the same names and shapes. Parameters absent from `state` start
    /// fresh; an unknown name, a missing buffer, or a wrong shape or dtype is an error and
    /// leaves the current state untouched.
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()>;
}

/// The parameters handed to an optimizer: named, or unnamed (then named "0", "1", ...).
#[derive(Clone, Debug, Default)]
pub struct ParamList(pub Vec<(String, Tensor)>);

impl From<Vec<(String, Tensor)>> for ParamList {
    fn from(named: Vec<(String, Tensor)>) -> ParamList {
        ParamList(named)
    }
}

impl From<Vec<Tensor>> for ParamList {
    fn from(params: Vec<Tensor>) -> ParamList {
        ParamList(
            params
                .into_iter()
                .enumerate()
                .map(|(i, t)| (i.to_string(), t))
                .collect(),
        )
    }
}

impl From<&[Tensor]> for ParamList {
    fn from(params: &[Tensor]) -> ParamList {
        ParamList::from(params.to_vec())
    }
}

/// One parameter's state: the number of steps it took and its buffers, in the order of the
/// optimizer's keys, each shaped like the parameter.
#[derive(Clone, Debug)]
pub(crate) struct ParamState {
    pub step: u64,
    pub buffers: Vec<Storage>,
}

/// The parameters and their state, shared by all optimizers.
#[derive(Clone, Debug)]
pub(crate) struct ParamSet {
    pub params: Vec<(String, Tensor)>,
    pub states: Vec<Option<ParamState>>,
}

pub(crate) fn check_hyper(op: &'static str, name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{name} must be finite and >= 0, got {v}"),
        ))
    }
}

impl ParamSet {
    /// Checks that every parameter is a distinct, whole, contiguous leaf under a distinct name.
    pub fn new(op: &'static str, params: ParamList) -> Result<ParamSet> {
        let mut names = HashSet::new();
        let mut ids: HashSet<TensorId> = HashSet::new();
        for (name, p) in &params.0 {
            if !names.insert(name.as_str()) {
                return Err(Error::invalid(
                    op,
                    format!("parameter name {name:?} appears twice"),
                ));
            }
            if !ids.insert(p.id()) {
                return Err(Error::invalid(
                    op,
                    format!("parameter {name:?} {:?} is listed twice", p.shape()),
                ));
            }
            if !p.is_leaf() {
                return Err(Error::invalid(
                    op,
                    format!(
                        "parameter {name:?} {:?} is not a leaf (made by an op); optimize the leaf it came from",
                        p.shape()
                    ),
                ));
            }
            if !p.is_contiguous() || p.layout().offset != 0 || p.storage().len() != p.numel() {
                return Err(Error::invalid(
                    op,
                    format!(
                        "parameter {name:?} {:?} is a view; parameters must own whole contiguous storage",
                        p.shape()
                    ),
                ));
            }
        }
        let n = params.0.len();
        Ok(ParamSet {
            params: params.0,
            states: vec![None; n],
        })
    }

    /// The gradient of parameter `i`, if it has one, checked to match the parameter.
    pub fn grad_of(&self, op: &'static str, i: usize) -> Result<Option<Tensor>> {
        let (name, p) = &self.params[i];
        let g = match p.grad() {
            Some(g) => g,
            None => return Ok(None),
        };
        if g.shape() != p.shape() || g.dtype() != p.dtype() {
            return Err(Error::grad(
                op,
                format!(
                    "gradient {:?} {} of parameter {name:?} does not match it ({:?} {})",
                    g.shape(),
                    g.dtype(),
                    p.shape(),
                    p.dtype()
                ),
            ));
        }
        Ok(Some(g))
    }

    /// The state of parameter `i`, created with `n_buffers` zero buffers (on the parameter's
    /// device) on first use.
    pub fn state_mut(&mut self, i: usize, n_buffers: usize) -> Result<&mut ParamState> {
        let p = &self.params[i].1;
        let (dtype, numel, device) = (p.dtype(), p.numel(), p.device());
        if self.states[i].is_none() {
            let buffers = (0..n_buffers)
                .map(|_| Storage::filled(dtype, numel, 0.0, device))
                .collect::<Result<Vec<_>>>()?;
            self.states[i] = Some(ParamState { step: 0, buffers });
        }
        self.states[i]
            .as_mut()
            .ok_or_else(|| Error::invalid("optimizer", "state was just created"))
    }

    pub fn export(&self, keys: &[&str]) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for ((name, p), state) in self.params.iter().zip(&self.states) {
            let Some(state) = state else { continue };
            out.push((
                format!("{name}.step"),
                Tensor::scalar(state.step as f64, DType::F64),
            ));
            for (key, buf) in keys.iter().zip(&state.buffers) {
                // the buffer was made with the parameter's size
                let t = Tensor::from_storage(buf.clone(), Layout::contiguous(p.shape()));
                out.push((format!("{name}.{key}"), t));
            }
        }
        out
    }

    pub fn import(
        &mut self,
        op: &'static str,
        keys: &[&str],
        state: &[(String, Tensor)],
    ) -> Result<()> {
        let mut by_name: HashMap<&str, &Tensor> = HashMap::new();
        for (name, t) in state {
            if by_name.insert(name.as_str(), t).is_some() {
                return Err(Error::invalid(
                    op,
                    format!("state entry {name:?} appears twice"),
                ));
            }
        }
        let mut used = 0usize;
        let mut new_states = Vec::with_capacity(self.params.len());
        for (name, p) in &self.params {
            let step_key = format!("{name}.step");
            let Some(step_t) = by_name.get(step_key.as_str()) else {
                if let Some(k) = keys
                    .iter()
                    .find(|k| by_name.contains_key(format!("{name}.{k}").as_str()))
                {
                    return Err(Error::invalid(
                        op,
                        format!("state has {name}.{k} but no {step_key}"),
                    ));
                }
                new_states.push(None);
                continue;
            };
            used += 1;
            let step = step_t.item().map_err(|_| {
                Error::invalid(
                    op,
                    format!("{step_key} must be a scalar, got {:?}", step_t.shape()),
                )
            })?;
            if !(step.is_finite() && step >= 0.0 && step.fract() == 0.0) {
                return Err(Error::invalid(
                    op,
                    format!("{step_key} must be a nonnegative whole number, got {step}"),
                ));
            }
            let mut buffers = Vec::with_capacity(keys.len());
            for key in keys {
                let full = format!("{name}.{key}");
                let t = by_name.get(full.as_str()).ok_or_else(|| {
                    Error::invalid(op, format!("state lacks {full} (has {step_key})"))
                })?;
                used += 1;
                if t.shape() != p.shape() || t.dtype() != p.dtype() {
                    return Err(Error::shape(
                        op,
                        format!(
                            "{full} is {:?} {} but parameter {name:?} is {:?} {}",
                            t.shape(),
                            t.dtype(),
                            p.shape(),
                            p.dtype()
                        ),
                    ));
                }
                buffers.push(t.storage().to_device(t.layout(), p.device())?);
            }
            new_states.push(Some(ParamState {
                step: step as u64,
                buffers,
            }));
        }
        if used != by_name.len() {
            let known: HashSet<String> = self
                .params
                .iter()
                .flat_map(|(n, _)| {
                    std::iter::once(format!("{n}.step"))
                        .chain(keys.iter().map(move |k| format!("{n}.{k}")))
                })
                .collect();
            let mut unknown: Vec<&str> = by_name
                .keys()
                .copied()
                .filter(|k| !known.contains(*k))
                .collect();
            unknown.sort_unstable();
            return Err(Error::invalid(
                op,
                format!("state entries {unknown:?} match no parameter of this optimizer"),
            ));
        }
        self.states = new_states;
        Ok(())
    }
}

/// Two distinct buffers of one parameter's state.
pub(crate) fn pair_mut(bufs: &mut [Storage]) -> Option<(&mut Storage, &mut Storage)> {
    match bufs {
        [a, b] => Some((a, b)),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::tensor::Tensor;

    /// loss = sum(c * (p - target)^2), whose gradient is 2 c (p - target).
    pub fn quadratic_step(p: &Tensor, c: &[f64], target: &[f64]) {
        let shape = p.shape().to_vec();
        let c = Tensor::from_slice(c, &shape)
            .unwrap()
            .to_dtype(p.dtype())
            .unwrap();
        let target = Tensor::from_slice(target, &shape)
            .unwrap()
            .to_dtype(p.dtype())
            .unwrap();
        p.sub(&target)
            .unwrap()
            .square()
            .unwrap()
            .mul(&c)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
    }

    pub fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_lists_are_checked() {
        let a = Tensor::zeros(&[2], DType::F32)
            .requires_grad_(true)
            .unwrap();
        let dup = vec![("a".to_string(), a.clone()), ("a".to_string(), a.clone())];
        assert!(Sgd::new(dup, SgdConfig::default()).is_err());
        let twice = vec![("a".to_string(), a.clone()), ("b".to_string(), a.clone())];
        assert!(Sgd::new(twice, SgdConfig::default()).is_err());
        let non_leaf = a.mul_scalar(2.0).unwrap();
        assert!(Sgd::new(vec![non_leaf], SgdConfig::default()).is_err());
        let m = Tensor::zeros(&[2, 3], DType::F32);
        assert!(Sgd::new(vec![m.t().unwrap().detach()], SgdConfig::default()).is_err());
        let opt = Sgd::new(vec![a.clone()], SgdConfig::default()).unwrap();
        assert_eq!(opt.params()[0].0, "0");
    }
}
