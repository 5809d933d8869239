//! Instance normalisation (Ulyanov et al., 2016) with PyTorch's `nn.InstanceNorm2d` conventions.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::nn::batchnorm::{batch_norm_train, check_options, normalize_with, update_running};
use crate::nn::{parameter, Module};
use crate::tensor::Tensor;

/// InstanceNorm2d over input [N, C, H, W] (or an unbatched [C, H, W]): each (sample, channel)
/// plane is normalised by its own mean and *biased* variance over H and W,
///
/// y = (x - mean_nc) / sqrt(var_nc + eps) [* weight_c + bias_c when affine].
///
/// PyTorch's defaults: `affine = false`, `track_running_stats = false` (then training and
/// evaluation behave the same), eps = 1e-5, momentum = 0.1. Options:
/// - `affine`: learnable per-channel weight (ones) and bias (zeros), as in BatchNorm.
/// - `track_running_stats`: running_mean (zeros) and running_var (ones) buffers. In training,
///   each batch moves them by PyTorch's rule running = (1 - momentum) running + momentum stat,
///   where stat is the per-channel average over the batch of the instance means and of the
///   *unbiased* instance variances (times HW / (HW - 1)); in evaluation they replace the
///   instance statistics.
///
/// Unlike PyTorch, which only warns, an input whose channel count differs from
/// `num_features` is an error even without affine parameters.
#[derive(Clone, Debug)]
pub struct InstanceNorm2d {
    /// gamma (ones), when affine
    pub weight: Option<Tensor>,
    /// beta (zeros), when affine
    pub bias: Option<Tensor>,
    /// buffer (zeros), when tracking running statistics
    pub running_mean: Option<Tensor>,
    /// buffer (ones), when tracking running statistics
    pub running_var: Option<Tensor>,
    /// Added to the variance before its square root.
    pub eps: f64,
    /// The running statistics' update weight.
    pub momentum: f64,
    num_features: usize,
    training: bool,
    num_batches_tracked: u64,
}

const OP: &str = "instance_norm2d";

impl InstanceNorm2d {
    /// PyTorch's defaults: no affine parameters, no running statistics, eps = 1e-5.
    pub fn new(num_features: usize, dtype: DType) -> Result<InstanceNorm2d> {
        InstanceNorm2d::with_options(num_features, 1e-5, 0.1, false, false, dtype)
    }

    /// Errors unless eps >= 0 and 0 <= momentum <= 1 (both finite).
    pub fn with_options(
        num_features: usize,
        eps: f64,
        momentum: f64,
        affine: bool,
        track_running_stats: bool,
        dtype: DType,
    ) -> Result<InstanceNorm2d> {
        check_options(OP, eps, momentum)?;
        let (weight, bias) = if affine {
            (
                Some(parameter(Tensor::ones(&[num_features], dtype))?),
                Some(parameter(Tensor::zeros(&[num_features], dtype))?),
            )
        } else {
            (None, None)
        };
        let (running_mean, running_var) = if track_running_stats {
            (
                Some(Tensor::zeros(&[num_features], dtype)),
                Some(Tensor::ones(&[num_features], dtype)),
            )
        } else {
            (None, None)
        };
        Ok(InstanceNorm2d {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
            momentum,
            num_features,
            training: true,
            num_batches_tracked: 0,
        })
    }

    /// C, the channels normalised.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// True in training mode, false in evaluation.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// How many training batches have updated the running statistics (0 when not tracking).
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked
    }

    /// Normalises each (sample, channel) plane of x [N, C, H, W] or [C, H, W] (see the type's
    /// documentation).
    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let c = self.num_features;
        if x.rank() == 3 {
            if x.shape()[0] != c {
                return Err(self.shape_error(x));
            }
            return self.forward(&x.unsqueeze(0)?)?.squeeze(0);
        }
        if x.rank() != 4 || x.shape()[1] != c {
            return Err(self.shape_error(x));
        }
        for t in [&self.weight, &self.running_mean].into_iter().flatten() {
            t.same_dtype(OP, x)?;
        }
        let (n, hw) = (x.shape()[0], x.shape()[2] * x.shape()[3]);
        let channel_shape = [c, 1, 1];
        let tracked = self.running_mean.clone().zip(self.running_var.clone());
        if let (Some((rm, rv)), false) = (&tracked, self.training) {
            let xhat = normalize_with(
                x,
                &rm.reshape(&channel_shape)?,
                &rv.reshape(&channel_shape)?,
                self.eps,
            )?;
            return match (&self.weight, &self.bias) {
                (Some(w), Some(b)) => xhat
                    .mul(&w.reshape(&channel_shape)?)?
                    .add(&b.reshape(&channel_shape)?),
                _ => Ok(xhat),
            };
        }
        if hw < 2 {
            return Err(Error::invalid(
                OP,
                format!(
                    "expects more than 1 spatial element per plane when using input \
                     statistics, got input {:?}",
                    x.shape()
                ),
            ));
        }
        // each (sample, channel) plane is a channel of the fused batch norm over [1, N·C, H·W],
        // the affine parameters repeated for every sample
        let per_plane = |t: &Tensor| t.unsqueeze(0)?.expand(&[n, c])?.reshape(&[n * c]);
        let (w, b) = match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => (per_plane(w)?, per_plane(b)?),
            _ => (
                Tensor::full_on(&[n * c], 1.0, x.dtype(), x.device())?,
                Tensor::full_on(&[n * c], 0.0, x.dtype(), x.device())?,
            ),
        };
        let (y, mean, var) = batch_norm_train(&x.reshape(&[1, n * c, hw])?, &w, &b, self.eps)?;
        if let (Some((rm, rv)), true) = (tracked, n > 0) {
            // per channel: the batch average of the instance statistics
            let average = |t: &Tensor| -> Vec<f64> {
                let v = t.to_vec_f64();
                (0..c)
                    .map(|ch| (0..n).map(|s| v[s * c + ch]).sum::<f64>() / n as f64)
                    .collect()
            };
            update_running(&rm, &rv, self.momentum, &average(&mean), &average(&var), hw)?;
            self.num_batches_tracked += 1;
        }
        y.reshape(x.shape())
    }

    fn shape_error(&self, x: &Tensor) -> Error {
        let c = self.num_features;
        Error::shape(
            OP,
            format!(
                "input {:?} must be [N, {c}, H, W] or [{c}, H, W] for {c} features",
                x.shape()
            ),
        )
    }
}

impl Module for InstanceNorm2d {
    /// "weight" and "bias" when affine, else nothing.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        [("weight", &self.weight), ("bias", &self.bias)]
            .into_iter()
            .filter_map(|(n, t)| t.as_ref().map(|t| (n.to_string(), t.clone())))
            .collect()
    }

    /// "running_mean" and "running_var" when tracking running statistics, else nothing.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        [
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ]
        .into_iter()
        .filter_map(|(n, t)| t.as_ref().map(|t| (n.to_string(), t.clone())))
        .collect()
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    /// [N=2, C=1, 2, 2]: sample 0 holds 1, 3, 5, 7 (mean 4, var 5); sample 1 holds 0, 0, 0, 4
    /// (mean 1, var 3).
    fn input() -> Tensor {
        Tensor::from_vec(
            vec![1.0f64, 3.0, 5.0, 7.0, 0.0, 0.0, 0.0, 4.0],
            &[2, 1, 2, 2],
        )
        .unwrap()
    }

    #[test]
    fn each_plane_is_normalised_on_its_own() {
        let mut norm = InstanceNorm2d::new(1, DType::F64).unwrap();
        assert!(norm.parameters().is_empty() && norm.named_buffers().is_empty());
        let y = norm.forward(&input()).unwrap();
        let (s0, s1) = ((5.0f64 + 1e-5).sqrt(), (3.0f64 + 1e-5).sqrt());
        let want = [
            -3.0 / s0,
            -1.0 / s0,
            1.0 / s0,
            3.0 / s0,
            -1.0 / s1,
            -1.0 / s1,
            -1.0 / s1,
            3.0 / s1,
        ];
        close(&y.to_vec_f64(), &want, 1e-12);
        // without running statistics, eval uses the instance statistics too
        norm.eval();
        close(&norm.forward(&input()).unwrap().to_vec_f64(), &want, 1e-12);
        // unbatched input
        let one = input().narrow(0, 0, 1).unwrap().squeeze(0).unwrap();
        close(&norm.forward(&one).unwrap().to_vec_f64(), &want[..4], 1e-12);
    }

    #[test]
    fn running_statistics_average_the_instances() {
        let mut norm = InstanceNorm2d::with_options(1, 1e-5, 0.1, true, true, DType::F64).unwrap();
        let names: Vec<String> = norm.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias", "running_mean", "running_var"]);
        norm.forward(&input()).unwrap();
        // mean of means 2.5; mean of unbiased variances (20/3 + 4) / 2
        close(
            &norm.running_mean.as_ref().unwrap().to_vec_f64(),
            &[0.25],
            1e-12,
        );
        close(
            &norm.running_var.as_ref().unwrap().to_vec_f64(),
            &[0.9 + 0.1 * (20.0 / 3.0 + 4.0) / 2.0],
            1e-12,
        );
        assert_eq!(norm.num_batches_tracked(), 1);
        norm.eval();
        let rv = 0.9 + 0.1 * (20.0f64 / 3.0 + 4.0) / 2.0;
        let y = norm.forward(&input()).unwrap().to_vec_f64();
        close(&y[..1], &[(1.0 - 0.25) / (rv + 1e-5).sqrt()], 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut norm = InstanceNorm2d::new(2, DType::F64).unwrap();
        let e = norm.forward(&input()).unwrap_err().to_string();
        assert!(
            e.contains("instance_norm2d") && e.contains("[2, 1, 2, 2]"),
            "{e}"
        );
        assert!(norm.forward(&Tensor::zeros(&[2, 2], DType::F64)).is_err());
        assert!(norm
            .forward(&Tensor::zeros(&[1, 2, 1, 1], DType::F64))
            .is_err());
        assert!(InstanceNorm2d::with_options(2, -1.0, 0.1, false, false, DType::F32).is_err());
    }
}
