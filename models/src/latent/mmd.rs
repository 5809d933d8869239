//! The maximum mean discrepancy with the inverse multiquadratic kernel (Tolstikhin et al. 2017,
//! Algorithm 2): WAE-MMD's penalty ([`crate::latent::wae`]) and the `latent_mmd` figure that
//! `eval` reports for every autoencoder without a likelihood
//! ([`crate::latent::autoencoder_metrics`]).

use autograd::{Error, Result, Tensor};

/// The scales of the IMQ kernel's C (times 2 d sigma_z^2), as in the authors' code.
pub const IMQ_SCALES: [f64; 7] = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// The unbiased estimate of MMD^2 between the rows of `x` [n, d] and of `y` [m, d] (n, m >= 2)
/// with the kernel sum_s C_s / (C_s + ||a - b||^2), C_s = s * 2 d `prior_var` over
/// [`IMQ_SCALES`]: the mean of k over pairs of distinct rows of x, plus the same for y, minus
/// twice the mean of k over all pairs (x_l, y_j). Differentiable; about 0 when x and y are
/// samples of one distribution.
pub fn mmd_imq(x: &Tensor, y: &Tensor, prior_var: f64) -> Result<Tensor> {
    let (xs, ys) = (x.shape(), y.shape());
    if xs.len() != 2 || ys.len() != 2 || xs[1] != ys[1] || xs[0] < 2 || ys[0] < 2 {
        return Err(Error::shape(
            "mmd_imq",
            format!("needs samples [n, d] and [m, d] with n, m >= 2, got {xs:?} and {ys:?}"),
        ));
    }
    if !(prior_var.is_finite() && prior_var > 0.0) {
        return Err(Error::invalid(
            "mmd_imq",
            format!("prior_var must be positive, got {prior_var}"),
        ));
    }
    let (n, m, d) = (xs[0] as f64, ys[0] as f64, xs[1] as f64);
    // squared distances of all pairs, [rows of a, rows of b]; exactly 0 on a diagonal
    let dist2 = |a: &Tensor, b: &Tensor| -> Result<Tensor> {
        a.unsqueeze(1)?
            .sub(&b.unsqueeze(0)?)?
            .square()?
            .sum(&[2], false)
    };
    let kernel_sum = |d2: &Tensor| -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for s in IMQ_SCALES {
            let c = s * 2.0 * d * prior_var;
            // C / (C + d2) = (1 + d2 / C)^-1
            let k = d2.div_scalar(c)?.add_scalar(1.0)?.powf(-1.0)?.sum_all()?;
            total = Some(match total {
                None => k,
                Some(t) => t.add(&k)?,
            });
        }
        total.ok_or_else(|| Error::invalid("mmd_imq", "no kernel scales"))
    };
    let s = IMQ_SCALES.len() as f64;
    // the diagonal of k(x, x) is exactly s (one per scale): remove it for the unbiased means
    let kxx = kernel_sum(&dist2(x, x)?)?
        .sub_scalar(n * s)?
        .div_scalar(n * (n - 1.0))?;
    let kyy = kernel_sum(&dist2(y, y)?)?
        .sub_scalar(m * s)?
        .div_scalar(m * (m - 1.0))?;
    let kxy = kernel_sum(&dist2(x, y)?)?.div_scalar(n * m)?;
    kxx.add(&kyy)?.sub(&kxy.mul_scalar(2.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autograd::{DType, Rng};

    #[test]
    fn mmd_is_about_zero_for_one_distribution_and_positive_for_two() {
        let mut rng = Rng::new(7);
        let n = 300;
        let a = Tensor::randn(&[n, 8], DType::F64, &mut rng);
        let b = Tensor::randn(&[n, 8], DType::F64, &mut rng);
        let same = mmd_imq(&a, &b, 1.0).unwrap().item().unwrap();
        // shifted by 1 in every coordinate, or squeezed to half the spread
        let shifted = mmd_imq(&a, &b.add_scalar(1.0).unwrap(), 1.0)
            .unwrap()
            .item()
            .unwrap();
        let squeezed = mmd_imq(&a, &b.mul_scalar(0.5).unwrap(), 1.0)
            .unwrap()
            .item()
            .unwrap();
        assert!(same.abs() < 0.01, "same distribution: {same}");
        assert!(
            shifted > 0.1 && shifted > 20.0 * same.abs(),
            "shifted: {shifted} (same {same})"
        );
        assert!(
            squeezed > 0.05 && squeezed > 10.0 * same.abs(),
            "squeezed: {squeezed} (same {same})"
        );
        // the unbiased estimate: its mean over many pairs of samples of one distribution is 0
        let mean: f64 = (0..20)
            .map(|_| {
                let a = Tensor::randn(&[20, 2], DType::F64, &mut rng);
                let b = Tensor::randn(&[20, 2], DType::F64, &mut rng);
                mmd_imq(&a, &b, 1.0).unwrap().item().unwrap()
            })
            .sum::<f64>()
            / 20.0;
        assert!(mean.abs() < 0.02, "mean over samples {mean}");
        // two copies of the same rows: the cross term counts the diagonal (k = 7, one per
        // scale) that the unbiased within-sample terms leave out, so the estimate is negative
        let one = mmd_imq(&a, &a, 1.0).unwrap().item().unwrap();
        assert!(one < 0.0, "{one}");
        assert!(mmd_imq(&a, &Tensor::zeros(&[5, 3], DType::F64), 1.0).is_err());
        assert!(mmd_imq(&a.narrow(0, 0, 1).unwrap(), &a, 1.0).is_err());
        assert!(mmd_imq(&a, &b, 0.0).is_err());
    }

    #[test]
    fn mmd_by_hand_on_two_points_each() {
        // d = 1, prior_var 1: C_s = 2 s; x = {0, 1}, y = {0, 3}
        let x = Tensor::from_vec(vec![0.0f64, 1.0], &[2, 1]).unwrap();
        let y = Tensor::from_vec(vec![0.0f64, 3.0], &[2, 1]).unwrap();
        let k = |d2: f64| {
            IMQ_SCALES
                .iter()
                .map(|s| 2.0 * s / (2.0 * s + d2))
                .sum::<f64>()
        };
        let want = k(1.0) + k(9.0) - 2.0 / 4.0 * (k(0.0) + k(9.0) + k(1.0) + k(4.0));
        let got = mmd_imq(&x, &y, 1.0).unwrap().item().unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
