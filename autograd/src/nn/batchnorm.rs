//! Batch normalisation (Ioffe & Szegedy, 2015) over the batch and spatial axes, with PyTorch's
//! conventions: `BatchNorm1d` over [N, C] or [N, C, L], `BatchNorm2d` over [N, C, H, W]. One
//! generic type serves both; the normalisation and running-statistics helpers here are shared
//! with `InstanceNorm2d`.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::grad_mode::{is_grad_enabled, no_grad};
use crate::layout::Layout;
use crate::nn::{parameter, update_f64, Module};
use crate::op::CustomBackward;
use crate::tensor::Tensor;
use kernels::desc::AxisSplit;
use std::sync::Arc;

/// Batch normalisation per channel (axis 1) over every other axis: for each channel c,
///
/// y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.
///
/// - Training: mean_c and var_c are the batch's mean and *biased* variance over N and the
///   spatial axes, and the running statistics move by PyTorch's rule
///   running = (1 - momentum) * running + momentum * batch_stat,
///   with the *unbiased* batch variance (times n / (n - 1), n = values per channel) for
///   running_var.
/// - Evaluation: mean_c and var_c are running_mean and running_var.
///
/// `DIMS` is the number of spatial axes: use the aliases [`BatchNorm1d`] (input [N, C] or
/// [N, C, L], PyTorch's `nn.BatchNorm1d`) and [`BatchNorm2d`] (input [N, C, H, W],
/// `nn.BatchNorm2d`). The forward is built from Tensor ops, so gradients (and gradients of
/// gradients) flow to the input, weight and bias; the running statistics are buffers updated in
/// place without a graph.
#[derive(Clone, Debug)]
pub struct BatchNorm<const DIMS: usize> {
    /// gamma, initialised to ones
    pub weight: Tensor,
    /// beta, initialised to zeros
    pub bias: Tensor,
    /// buffer, initialised to zeros
    pub running_mean: Tensor,
    /// buffer, initialised to ones
    pub running_var: Tensor,
    /// Added to the variance before its square root.
    pub eps: f64,
    /// The running statistics' update weight (see above).
    pub momentum: f64,
    training: bool,
    num_batches_tracked: u64,
}

/// PyTorch's `nn.BatchNorm1d`: input [N, C] or [N, C, L], statistics over N (and L).
pub type BatchNorm1d = BatchNorm<1>;

/// PyTorch's `nn.BatchNorm2d`: input [N, C, H, W], statistics over N, H and W.
pub type BatchNorm2d = BatchNorm<2>;

/// Errors unless eps >= 0 and 0 <= momentum <= 1 (both finite).
pub(crate) fn check_options(op: &'static str, eps: f64, momentum: f64) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::invalid(
            op,
            format!("eps must be finite and >= 0, got {eps}"),
        ));
    }
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::invalid(
            op,
            format!("momentum must be in [0, 1], got {momentum}"),
        ));
    }
    Ok(())
}

/// (x - mean) / sqrt(var + eps) with the mean and *biased* variance over `axes`; also returns
/// that mean and variance (the axes kept as size 1). Differentiable to any order.
pub(crate) fn normalize_over(
    x: &Tensor,
    axes: &[isize],
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mean = x.mean(axes, true)?;
    let centred = x.sub(&mean)?;
    let var = centred.square()?.mean(axes, true)?;
    let xhat = centred.div(&var.add_scalar(eps)?.sqrt()?)?;
    Ok((xhat, mean, var))
}

/// (x - mean) / sqrt(var + eps) with given statistics that broadcast against x.
pub(crate) fn normalize_with(x: &Tensor, mean: &Tensor, var: &Tensor, eps: f64) -> Result<Tensor> {
    x.sub(mean)?.div(&var.add_scalar(eps)?.sqrt()?)
}

/// PyTorch's running-statistics rule, in place and outside the graph:
/// running = (1 - momentum) running + momentum batch, where the variance is made unbiased with
/// n / (n - 1) (`batch_var` is biased, `n` the number of values each statistic averaged).
pub(crate) fn update_running(
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f64,
    batch_mean: &[f64],
    batch_var: &[f64],
    n: usize,
) -> Result<()> {
    let unbiased = n as f64 / (n - 1) as f64;
    no_grad(|| {
        update_f64(running_mean, |i, r| {
            momentum * batch_mean[i] + (1.0 - momentum) * r
        })?;
        update_f64(running_var, |i, r| {
            momentum * batch_var[i] * unbiased + (1.0 - momentum) * r
        })
    })
}

impl<const DIMS: usize> BatchNorm<DIMS> {
    /// The op name in errors: PyTorch's functional name, with the dimension for 2-D.
    const OP: &'static str = if DIMS == 1 {
        "batch_norm"
    } else {
        "batch_norm2d"
    };

    /// PyTorch's defaults: eps = 1e-5, momentum = 0.1, in training mode.
    pub fn new(num_features: usize, dtype: DType) -> Result<BatchNorm<DIMS>> {
        BatchNorm::with_options(num_features, 1e-5, 0.1, dtype)
    }

    /// Errors unless eps >= 0 and 0 <= momentum <= 1 (both finite).
    pub fn with_options(
        num_features: usize,
        eps: f64,
        momentum: f64,
        dtype: DType,
    ) -> Result<BatchNorm<DIMS>> {
        check_options(Self::OP, eps, momentum)?;
        Ok(BatchNorm {
            weight: parameter(Tensor::ones(&[num_features], dtype))?,
            bias: parameter(Tensor::zeros(&[num_features], dtype))?,
            running_mean: Tensor::zeros(&[num_features], dtype),
            running_var: Tensor::ones(&[num_features], dtype),
            eps,
            momentum,
            training: true,
            num_batches_tracked: 0,
        })
    }

    /// C, the channels normalised.
    pub fn num_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// True in training mode (batch statistics), false in evaluation (running statistics).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// How many training batches have updated the running statistics.
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked
    }

    /// Normalises x per channel (see the type's documentation): [N, C] or [N, C, L] for
    /// `BatchNorm1d`, [N, C, H, W] for `BatchNorm2d`.
    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let c = self.num_features();
        let rank_ok = if DIMS == 1 {
            x.rank() == 2 || x.rank() == 3
        } else {
            x.rank() == DIMS + 2
        };
        if !rank_ok || x.shape()[1] != c {
            let want = match DIMS {
                1 => format!("[N, {c}] or [N, {c}, L]"),
                2 => format!("[N, {c}, H, W]"),
                _ => format!("[N, {c}, ...] with {DIMS} spatial axes"),
            };
            return Err(Error::shape(
                Self::OP,
                format!("input {:?} must be {want} for {c} features", x.shape()),
            ));
        }
        self.weight.same_dtype(Self::OP, x)?;
        if self.training {
            let n: usize = x.numel() / c.max(1);
            if n < 2 {
                return Err(Error::invalid(
                    Self::OP,
                    format!(
                        "training needs more than 1 value per channel, got input {:?}",
                        x.shape()
                    ),
                ));
            }
            let (y, mean, var) = batch_norm_train(x, &self.weight, &self.bias, self.eps)?;
            update_running(
                &self.running_mean,
                &self.running_var,
                self.momentum,
                &mean.to_vec_f64(),
                &var.to_vec_f64(),
                n,
            )?;
            self.num_batches_tracked += 1;
            return Ok(y);
        }
        // the running statistics and affine parameters broadcast against x as [C, 1, ...]
        let mut channel_shape = vec![c];
        channel_shape.resize(x.rank() - 1, 1);
        let xhat = normalize_with(
            x,
            &self.running_mean.reshape(&channel_shape)?,
            &self.running_var.reshape(&channel_shape)?,
            self.eps,
        )?;
        xhat.mul(&self.weight.reshape(&channel_shape)?)?
            .add(&self.bias.reshape(&channel_shape)?)
    }
}

/// Batch normalisation in training mode as one op over x [N, C, ...] (statistics over every
/// axis but 1): y = (x - mean) / sqrt(var + eps) * weight + bias with the batch mean and biased
/// variance, returned beside y (each [C], outside the graph). The forward is one kernel call
/// (`kernels::cpu::norm`), as is the backward of all three gradients; when a graph of the
/// gradient is being recorded (gradients of gradients), the backward is written with Tensor ops
/// instead, so that it can be differentiated again.
pub(crate) fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let split = channel_split(x.shape());
    let (y, mean, var) = x.storage().batch_norm(
        x.layout(),
        split,
        (&weight.storage(), weight.layout()),
        (&bias.storage(), bias.layout()),
        eps,
    )?;
    let per_channel = Layout::contiguous(&[split.axis]);
    let value = Tensor::from_storage(y, Layout::contiguous(x.shape()));
    let mean = Tensor::from_storage(mean, per_channel.clone());
    let var = Tensor::from_storage(var, per_channel);
    let y = Tensor::from_custom_op(
        &value,
        vec![x.clone(), weight.clone(), bias.clone()],
        Arc::new(BatchNormBackward {
            eps,
            mean: mean.clone(),
            var: var.clone(),
        }),
    );
    Ok((y, mean, var))
}

/// [N, C, ...] as [samples, channels, positions per channel].
fn channel_split(shape: &[usize]) -> AxisSplit {
    AxisSplit::around(shape, 1, 1)
}

/// The backward of [`batch_norm_train`].
struct BatchNormBackward {
    eps: f64,
    /// The forward's batch statistics.
    mean: Tensor,
    var: Tensor,
}

impl CustomBackward for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn backward(&self, inputs: &[Tensor], _output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>> {
        let (x, weight) = (&inputs[0], &inputs[1]);
        if is_grad_enabled() {
            return recorded_backward(x, weight, grad, self.eps);
        }
        let split = channel_split(x.shape());
        let (dx, dw, db) = x.storage().batch_norm_backward(
            x.layout(),
            split,
            (&grad.storage(), grad.layout()),
            (&weight.storage(), weight.layout()),
            &self.mean.storage(),
            &self.var.storage(),
            self.eps,
        )?;
        let per_channel = Layout::contiguous(&[split.axis]);
        Ok(vec![
            Tensor::from_storage(dx, Layout::contiguous(x.shape())),
            Tensor::from_storage(dw, per_channel.clone()),
            Tensor::from_storage(db, per_channel),
        ])
    }
}

/// The three gradients in differentiable Tensor ops, the statistics recomputed from x so that
/// their dependence on x is part of the graph:
/// dx = (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) / sqrt(var + eps) with dxhat = g w,
/// dw = sum(g xhat), db = sum(g), means and sums over every axis but 1.
fn recorded_backward(x: &Tensor, weight: &Tensor, g: &Tensor, eps: f64) -> Result<Vec<Tensor>> {
    let axes: Vec<isize> = std::iter::once(0).chain(2..x.rank() as isize).collect();
    let mut channel_shape = vec![weight.numel()];
    channel_shape.resize(x.rank() - 1, 1);
    let (xhat, _, var) = normalize_over(x, &axes, eps)?;
    let dxhat = g.mul(&weight.reshape(&channel_shape)?)?;
    let along = dxhat.mul(&xhat)?.mean(&axes, true)?;
    let dx = dxhat
        .sub(&dxhat.mean(&axes, true)?)?
        .sub(&xhat.mul(&along)?)?
        .div(&var.add_scalar(eps)?.sqrt()?)?;
    let dw = g.mul(&xhat)?.sum(&axes, false)?;
    let db = g.sum(&axes, false)?;
    Ok(vec![dx, dw, db])
}

impl<const DIMS: usize> Module for BatchNorm<DIMS> {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
        ]
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
        ]
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::grad;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    fn input() -> Tensor {
        // channel 0: 1, 3, 5, 7 (mean 4, biased var 5, unbiased 20/3)
        // channel 1: 2, 2, 6, 10 (mean 5, biased var 11, unbiased 44/3)
        Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 2.0, 5.0, 6.0, 7.0, 10.0], &[4, 2]).unwrap()
    }

    #[test]
    fn training_normalises_with_the_biased_variance() {
        let mut bn = BatchNorm1d::new(2, DType::F64).unwrap();
        let y = bn.forward(&input()).unwrap();
        let (s0, s1) = ((5.0f64 + 1e-5).sqrt(), (11.0f64 + 1e-5).sqrt());
        let want = [
            -3.0 / s0,
            -3.0 / s1,
            -1.0 / s0,
            -3.0 / s1,
            1.0 / s0,
            1.0 / s1,
            3.0 / s0,
            5.0 / s1,
        ];
        close(&y.to_vec_f64(), &want, 1e-12);
        // running stats: 0.9 * init + 0.1 * batch, unbiased variance
        close(&bn.running_mean.to_vec_f64(), &[0.4, 0.5], 1e-12);
        close(
            &bn.running_var.to_vec_f64(),
            &[0.9 + 0.1 * 20.0 / 3.0, 0.9 + 0.1 * 44.0 / 3.0],
            1e-12,
        );
        assert_eq!(bn.num_batches_tracked(), 1);
        // a second batch moves them again
        bn.forward(&input()).unwrap();
        close(
            &bn.running_mean.to_vec_f64(),
            &[0.9 * 0.4 + 0.4, 0.9 * 0.5 + 0.5],
            1e-12,
        );
        assert!(!bn.running_mean.requires_grad());
    }

    #[test]
    fn affine_parameters_and_eval_path() {
        let mut bn = BatchNorm1d::new(2, DType::F64).unwrap();
        bn.weight
            .copy_from(&Tensor::from_vec(vec![2.0f64, -1.0], &[2]).unwrap())
            .unwrap();
        bn.bias
            .copy_from(&Tensor::from_vec(vec![0.5f64, 1.0], &[2]).unwrap())
            .unwrap();
        bn.running_mean
            .copy_from(&Tensor::from_vec(vec![1.0f64, -2.0], &[2]).unwrap())
            .unwrap();
        bn.running_var
            .copy_from(&Tensor::from_vec(vec![4.0f64, 0.25], &[2]).unwrap())
            .unwrap();
        bn.eval();
        let x = Tensor::from_vec(vec![3.0f64, 0.0], &[1, 2]).unwrap();
        let y = bn.forward(&x).unwrap().to_vec_f64();
        let want = [
            (3.0 - 1.0) / (4.0f64 + 1e-5).sqrt() * 2.0 + 0.5,
            -(2.0 / (0.25f64 + 1e-5).sqrt()) + 1.0,
        ];
        close(&y, &want, 1e-12);
        // eval leaves the running statistics alone and accepts a batch of one
        close(&bn.running_mean.to_vec_f64(), &[1.0, -2.0], 0.0);
        bn.train();
        let e = bn.forward(&x).unwrap_err().to_string();
        assert!(e.contains("batch_norm") && e.contains("[1, 2]"), "{e}");
    }

    #[test]
    fn three_dimensional_input_normalises_over_batch_and_length() {
        let mut bn = BatchNorm1d::new(2, DType::F64).unwrap();
        // [N=2, C=2, L=2]: channel 0 holds 1, 3, 5, 7; channel 1 holds 2, 2, 6, 10
        let x =
            Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 2.0, 5.0, 7.0, 6.0, 10.0], &[2, 2, 2]).unwrap();
        let y = bn.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 2, 2]);
        let (s0, s1) = ((5.0f64 + 1e-5).sqrt(), (11.0f64 + 1e-5).sqrt());
        close(
            &y.to_vec_f64(),
            &[
                -3.0 / s0,
                -1.0 / s0,
                -3.0 / s1,
                -3.0 / s1,
                1.0 / s0,
                3.0 / s0,
                1.0 / s1,
                5.0 / s1,
            ],
            1e-12,
        );
        close(
            &bn.running_var.to_vec_f64(),
            &[0.9 + 0.1 * 20.0 / 3.0, 0.9 + 0.1 * 44.0 / 3.0],
            1e-12,
        );
        assert!(bn.forward(&Tensor::zeros(&[2, 3], DType::F64)).is_err());
        assert!(bn.forward(&Tensor::zeros(&[2], DType::F64)).is_err());
        assert!(bn.forward(&Tensor::zeros(&[2, 2], DType::F32)).is_err());
    }

    /// sum over x of (dL/dx)^2 with L = sum(y * c): a function of the weight that only a
    /// differentiable backward can differentiate.
    fn grad_norm(weight: &[f64], x: &Tensor, create: bool) -> (f64, Option<Vec<f64>>) {
        let mut bn = BatchNorm1d::new(2, DType::F64).unwrap();
        bn.weight
            .copy_from(&Tensor::from_slice(weight, &[2]).unwrap())
            .unwrap();
        let x = x.detach().requires_grad_(true).unwrap();
        let c =
            Tensor::from_vec(vec![0.3f64, -1.0, 2.0, 0.5, -0.7, 1.5, 1.0, 0.2], &[4, 2]).unwrap();
        let loss = bn.forward(&x).unwrap().mul(&c).unwrap().sum_all().unwrap();
        let gx = grad(&[loss], &[], std::slice::from_ref(&x), create).unwrap()[0]
            .clone()
            .unwrap();
        let total = gx.square().unwrap().sum_all().unwrap();
        let value = total.item().unwrap();
        if !create {
            return (value, None);
        }
        let gw = grad(&[total], &[], &[bn.weight.clone()], false).unwrap()[0]
            .clone()
            .unwrap();
        (value, Some(gw.to_vec_f64()))
    }

    #[test]
    fn gradients_of_gradients_match_finite_differences() {
        let x =
            Tensor::from_vec(vec![0.1f64, 2.0, -1.0, 0.5, 2.5, -0.3, 0.7, 1.1], &[4, 2]).unwrap();
        let w = [1.3, -0.6];
        let (_, analytic) = grad_norm(&w, &x, true);
        let analytic = analytic.unwrap();
        let h = 1e-6;
        for i in 0..2 {
            let (mut up, mut down) = (w, w);
            up[i] += h;
            down[i] -= h;
            let fd = (grad_norm(&up, &x, false).0 - grad_norm(&down, &x, false).0) / (2.0 * h);
            assert!(
                (fd - analytic[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "d/dw{i}: {fd} vs {}",
                analytic[i]
            );
        }
    }

    /// The fused backward (no graph of the gradient) and the recorded one (used when the
    /// gradient is itself differentiated) give the same three gradients; the gradient checks
    /// test each only against itself otherwise.
    #[test]
    fn fused_and_recorded_backwards_agree() {
        let values = |len: usize, k: f64| -> Vec<f64> {
            (0..len)
                .map(|i| (i as f64 * k).sin() * 1.7 + 0.3 * k)
                .collect()
        };
        let x = Tensor::from_vec(values(48, 1.3), &[4, 3, 2, 2]).unwrap();
        let x = x.requires_grad_(true).unwrap();
        let mut bn = BatchNorm2d::new(3, DType::F64).unwrap();
        bn.weight = parameter(Tensor::from_vec(values(3, 2.1), &[3]).unwrap()).unwrap();
        bn.bias = parameter(Tensor::from_vec(values(3, 0.7), &[3]).unwrap()).unwrap();
        let v = Tensor::from_vec(values(48, 0.9), &[4, 3, 2, 2]).unwrap();
        let mut gradients = |create: bool| -> Vec<Vec<f64>> {
            let loss = bn.forward(&x).unwrap().mul(&v).unwrap().sum_all().unwrap();
            let inputs = [x.clone(), bn.weight.clone(), bn.bias.clone()];
            grad(&[loss], &[], &inputs, create)
                .unwrap()
                .into_iter()
                .map(|g| g.unwrap().to_vec_f64())
                .collect()
        };
        let (fused, recorded) = (gradients(false), gradients(true));
        for (f, r) in fused.iter().zip(&recorded) {
            close(f, r, 1e-13);
        }
        // and dbias is the plain sum of v over batch and space
        let sums: Vec<f64> = (0..3)
            .map(|c| {
                (0..4)
                    .flat_map(|n| (0..4).map(move |p| (n, p)))
                    .map(|(n, p)| v.to_vec_f64()[(n * 3 + c) * 4 + p])
                    .sum()
            })
            .collect();
        close(&fused[2], &sums, 1e-14);
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(BatchNorm1d::with_options(3, -1.0, 0.1, DType::F32).is_err());
        assert!(BatchNorm1d::with_options(3, 1e-5, 1.5, DType::F32).is_err());
        let bn = BatchNorm1d::new(3, DType::F32).unwrap();
        let names: Vec<String> = bn.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias", "running_mean", "running_var"]);
    }

    #[test]
    fn batch_norm_2d_normalises_over_batch_height_and_width() {
        let mut bn = BatchNorm2d::new(2, DType::F64).unwrap();
        // [N=2, C=2, H=1, W=2]: channel 0 holds 1, 3, 5, 7; channel 1 holds 2, 2, 6, 10
        let x = Tensor::from_vec(
            vec![1.0f64, 3.0, 2.0, 2.0, 5.0, 7.0, 6.0, 10.0],
            &[2, 2, 1, 2],
        )
        .unwrap();
        let y = bn.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 2, 1, 2]);
        let (s0, s1) = ((5.0f64 + 1e-5).sqrt(), (11.0f64 + 1e-5).sqrt());
        close(
            &y.to_vec_f64(),
            &[
                -3.0 / s0,
                -1.0 / s0,
                -3.0 / s1,
                -3.0 / s1,
                1.0 / s0,
                3.0 / s0,
                1.0 / s1,
                5.0 / s1,
            ],
            1e-12,
        );
        close(&bn.running_mean.to_vec_f64(), &[0.4, 0.5], 1e-12);
        close(
            &bn.running_var.to_vec_f64(),
            &[0.9 + 0.1 * 20.0 / 3.0, 0.9 + 0.1 * 44.0 / 3.0],
            1e-12,
        );
        bn.eval();
        let z = bn.forward(&x).unwrap().to_vec_f64();
        let rv0 = 0.9 + 0.1 * 20.0 / 3.0;
        close(&z[..1], &[(1.0 - 0.4) / (rv0 + 1e-5f64).sqrt()], 1e-12);
        let e = bn
            .forward(&Tensor::zeros(&[2, 2, 3], DType::F64))
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch_norm2d") && e.contains("[2, 2, 3]"), "{e}");
        assert!(bn
            .forward(&Tensor::zeros(&[2, 3, 1, 1], DType::F64))
            .is_err());
        bn.train();
        assert!(bn
            .forward(&Tensor::zeros(&[1, 2, 1, 1], DType::F64))
            .is_err());
    }
}
