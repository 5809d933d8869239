//! Batch normalisation over the batch axis (Ioffe & Szegedy, 2015), with PyTorch's conventions.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::grad_mode::no_grad;
use crate::nn::{parameter, update_f64, Module};
use crate::tensor::Tensor;

/// BatchNorm1d over input [N, C] or [N, C, L]: per channel c,
///
/// y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.
///
/// - Training: mean_c and var_c are the batch's mean and *biased* variance over N (and L), and
///   the running statistics move by PyTorch's rule
///   running = (1 - momentum) * running + momentum * batch_stat,
///   with the *unbiased* batch variance (times n / (n - 1), n = N * L) for running_var.
/// - Evaluation: mean_c and var_c are running_mean and running_var.
///
/// The forward is built from Tensor ops, so gradients (and gradients of gradients) flow to the
/// input, weight and bias; the running statistics are buffers updated in place without a graph.
#[derive(Clone, Debug)]
pub struct BatchNorm1d {
    /// gamma, initialised to ones
    pub weight: Tensor,
    /// beta, initialised to zeros
    pub bias: Tensor,
    /// buffer, initialised to zeros
    pub running_mean: Tensor,
    /// buffer, initialised to ones
    pub running_var: Tensor,
    pub eps: f64,
    pub momentum: f64,
    training: bool,
    num_batches_tracked: u64,
}

impl BatchNorm1d {
    /// PyTorch's defaults: eps = 1e-5, momentum = 0.1, in training mode.
    pub fn new(num_features: usize, dtype: DType) -> Result<BatchNorm1d> {
        BatchNorm1d::with_options(num_features, 1e-5, 0.1, dtype)
    }

    /// Errors unless eps >= 0 and 0 <= momentum <= 1 (both finite).
    pub fn with_options(
        num_features: usize,
        eps: f64,
        momentum: f64,
        dtype: DType,
    ) -> Result<BatchNorm1d> {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::invalid(
                "batch_norm",
                format!("eps must be finite and >= 0, got {eps}"),
            ));
        }
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::invalid(
                "batch_norm",
                format!("momentum must be in [0, 1], got {momentum}"),
            ));
        }
        Ok(BatchNorm1d {
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

    pub fn num_features(&self) -> usize {
        self.weight.shape()[0]
    }

    pub fn is_training(&self) -> bool {
        self.training
    }

    /// How many training batches have updated the running statistics.
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked
    }

    /// Normalises x [N, C] or [N, C, L] per channel (see the type's documentation).
    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let c = self.num_features();
        if !(x.rank() == 2 || x.rank() == 3) || x.shape()[1] != c {
            return Err(Error::shape(
                "batch_norm",
                format!(
                    "input {:?} must be [N, {c}] or [N, {c}, L] for {c} features",
                    x.shape()
                ),
            ));
        }
        self.weight.same_dtype("batch_norm", x)?;
        // per-channel tensors broadcast against x: [C] for [N, C], [C, 1] for [N, C, L]
        let channel_shape: &[usize] = if x.rank() == 2 { &[c] } else { &[c, 1] };
        let axes: &[isize] = if x.rank() == 2 { &[0] } else { &[0, 2] };
        let xhat = if self.training {
            let n: usize = x.numel() / c.max(1);
            if n < 2 {
                return Err(Error::invalid(
                    "batch_norm",
                    format!(
                        "training needs more than 1 value per channel, got input {:?}",
                        x.shape()
                    ),
                ));
            }
            let mean = x.mean(axes, true)?;
            let centred = x.sub(&mean)?;
            let var = centred.square()?.mean(axes, true)?;
            self.update_running_stats(&mean, &var, n)?;
            centred.div(&var.add_scalar(self.eps)?.sqrt()?)?
        } else {
            let mean = self.running_mean.reshape(channel_shape)?;
            let std = self
                .running_var
                .reshape(channel_shape)?
                .add_scalar(self.eps)?
                .sqrt()?;
            x.sub(&mean)?.div(&std)?
        };
        xhat.mul(&self.weight.reshape(channel_shape)?)?
            .add(&self.bias.reshape(channel_shape)?)
    }

    /// running = (1 - momentum) running + momentum batch, with the unbiased variance.
    fn update_running_stats(&mut self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let momentum = self.momentum;
        let batch_mean = mean.to_vec_f64();
        let unbiased = n as f64 / (n - 1) as f64;
        let batch_var: Vec<f64> = var.to_vec_f64().iter().map(|v| v * unbiased).collect();
        no_grad(|| {
            update_f64(&self.running_mean, |i, r| {
                momentum * batch_mean[i] + (1.0 - momentum) * r
            })?;
            update_f64(&self.running_var, |i, r| {
                momentum * batch_var[i] + (1.0 - momentum) * r
            })
        })?;
        self.num_batches_tracked += 1;
        Ok(())
    }
}

impl Module for BatchNorm1d {
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

    #[test]
    fn bad_options_are_errors() {
        assert!(BatchNorm1d::with_options(3, -1.0, 0.1, DType::F32).is_err());
        assert!(BatchNorm1d::with_options(3, 1e-5, 1.5, DType::F32).is_err());
        let bn = BatchNorm1d::new(3, DType::F32).unwrap();
        let names: Vec<String> = bn.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias", "running_mean", "running_var"]);
    }
}
