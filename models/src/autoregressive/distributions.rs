//! The distributions the autoregressive models output, and the lecture's parameter counting.
//!
//! - [`Bernoulli`]: one binary variable per element of a tensor, from logits
//!   l = log(p / (1 - p)) or from probabilities p.
//! - [`Categorical`]: one K-way variable per row of a tensor [..., K] of logits.
//!
//! Each has `log_prob` (differentiable through its parameters: it is written with Tensor ops, so
//! `backward()` reaches the logits), `sample` (from a seeded [`Rng`]; constants, no gradient),
//! `entropy` and `mode`.
//!
//! # Counting parameters (why autoregressive models)
//!
//! A distribution over a finite set of S outcomes needs S - 1 numbers (the last probability is
//! one minus the others). For images:
//!
//! | model of n binary pixels | parameters | function |
//! |---|---|---|
//! | any joint p(x_1, ..., x_n) | 2^n - 1 | [`joint_binary_params`] |
//! | chain rule, no assumption: p(x_1) p(x_2 \| x_1) ... | 1 + 2 + 4 + ... + 2^(n-1) = 2^n - 1 | [`chain_rule_binary_params`] |
//! | full independence p(x_1) ... p(x_n) | n | [`independent_binary_params`] |
//! | chain rule + Markov p(x_i \| x_(i-1)) | 1 + 2 (n - 1) = 2n - 1 | [`markov_binary_params`] |
//! | FVSBN: p(x_i \| x_<i) = sigmoid(a_i + sum_(j<i) W_ij x_j) | n + n(n-1)/2 | [`fvsbn_params`] |
//! | NADE, hidden size H | 2nH + n + H | [`nade_params`] |
//!
//! and one RGB pixel (three channels of 256 levels) is one categorical over 256^3 colours:
//! 256^3 - 1 = 16,777,215 parameters ([`rgb_pixel_params`]). For binarised MNIST (n = 784) the
//! joint needs 2^784 - 1, about 10^236, numbers: no table can hold it, independence is too weak
//! (n = 784 numbers, every pixel on its own) and the Markov chain too short-sighted. The
//! autoregressive models keep the exact chain rule but let a shared function compute each
//! conditional (a logistic regression in FVSBN, a one-hidden-layer network with tied weights in
//! NADE, masked convolutions in PixelCNN), so the count becomes polynomial in n.

use autograd::{DType, Error, Result, Rng, Tensor};

// ----- Bernoulli -------------------------------------------------------------------------------

/// Independent Bernoulli variables, one per element of `logits`:
/// p(x = 1) = sigmoid(l), log p(x) = x l - softplus(l).
#[derive(Clone, Debug)]
pub struct Bernoulli {
    logits: Tensor,
}

/// The probabilities kept away from 0 and 1 by this much before taking logits
/// (PyTorch clamps to the dtype's epsilon the same way).
fn prob_eps(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f64::from(f32::EPSILON),
        DType::F64 => f64::EPSILON,
        DType::BF16 => 2f64.powi(-7), // bf16: 8 significant bits
    }
}

impl Bernoulli {
    /// From logits l (any shape): p = sigmoid(l).
    pub fn from_logits(logits: &Tensor) -> Bernoulli {
        Bernoulli {
            logits: logits.clone(),
        }
    }

    /// From probabilities p in [0, 1] (any shape; an error names the first value outside):
    /// l = log p - log(1 - p), with p clamped to [eps, 1 - eps] (eps the dtype's machine
    /// epsilon) so that p = 0 or 1 gives a large finite logit. Gradients flow back to p (zero
    /// where the clamp is active).
    pub fn from_probs(probs: &Tensor) -> Result<Bernoulli> {
        if let Some((i, bad)) = probs
            .to_vec_f64()
            .into_iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(v))
        {
            return Err(Error::invalid(
                "bernoulli",
                format!(
                    "probability {bad} at flat index {i} of a tensor of shape {:?} is outside [0, 1]",
                    probs.shape()
                ),
            ));
        }
        let eps = prob_eps(probs.dtype());
        let p = probs.clamp(eps, 1.0 - eps)?;
        Ok(Bernoulli {
            logits: p.log()?.sub(&p.one_minus()?.log()?)?,
        })
    }

    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// p(x = 1) = sigmoid(l).
    pub fn probs(&self) -> Result<Tensor> {
        self.logits.sigmoid()
    }

    /// log p(x) = x l - softplus(l) elementwise, for `x` of the logits' shape. For x in {0, 1}
    /// this is log p or log(1 - p); values in between give minus the binary cross-entropy
    /// (how grey targets are scored). Differentiable in the logits (and in x).
    pub fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        if x.shape() != self.logits.shape() {
            return Err(Error::shape(
                "bernoulli log_prob",
                format!(
                    "values {:?} do not match the logits {:?}",
                    x.shape(),
                    self.logits.shape()
                ),
            ));
        }
        x.mul(&self.logits)?.sub(&self.logits.softplus()?)
    }

    /// -log p(x) of whole images, nats: the log-probabilities of each image's pixels summed and
    /// negated, `[B]` for values `x` and logits `[B, ...]`. The exact-likelihood models' NLL.
    pub fn nll_per_image(&self, x: &Tensor) -> Result<Tensor> {
        let lp = self.log_prob(x)?;
        let b = x.shape()[0];
        lp.reshape(&[b, x.numel() / b.max(1)])?
            .sum(&[1], false)?
            .neg()
    }

    /// One draw per element: 1 with probability sigmoid(l) (u < p, u ~ U(0, 1), one uniform per
    /// element in order). A constant of the logits' shape and dtype.
    pub fn sample(&self, rng: &mut Rng) -> Result<Tensor> {
        Tensor::bernoulli(&self.probs()?.detach(), rng)
    }

    /// H = -p log p - (1 - p) log(1 - p) = softplus(l) - l sigmoid(l) elementwise, in nats.
    pub fn entropy(&self) -> Result<Tensor> {
        let l = &self.logits;
        l.softplus()?.sub(&l.mul(&l.sigmoid()?)?)
    }

    /// The most probable value: 1 where p > 1/2 (l > 0), else 0 (a tie at p = 1/2 gives 0).
    pub fn mode(&self) -> Result<Tensor> {
        self.logits.detach().gt_scalar(0.0)
    }
}

// ----- Categorical -----------------------------------------------------------------------------

/// Independent categorical variables over K classes, one per row of `logits` [..., K]:
/// p(x = k) = softmax(l)_k, log p(x = k) = l_k - logsumexp(l).
#[derive(Clone, Debug)]
pub struct Categorical {
    logits: Tensor,
}

impl Categorical {
    /// From unnormalised logits [..., K] with K >= 1 (rank >= 1).
    pub fn from_logits(logits: &Tensor) -> Result<Categorical> {
        if logits.rank() == 0 || logits.shape()[logits.rank() - 1] == 0 {
            return Err(Error::shape(
                "categorical",
                format!(
                    "logits must be [..., K] with K >= 1 classes, got {:?}",
                    logits.shape()
                ),
            ));
        }
        Ok(Categorical {
            logits: logits.clone(),
        })
    }

    /// From nonnegative weights [..., K] (normalised here; each row needs a positive finite
    /// sum): l = log(p / sum p), with p clamped below at the dtype's tiny positive value.
    pub fn from_probs(probs: &Tensor) -> Result<Categorical> {
        let c = Categorical::from_logits(probs)?;
        let k = c.num_classes();
        let v = probs.to_vec_f64();
        for (row, r) in v.chunks(k).enumerate() {
            let sum: f64 = r.iter().sum();
            if r.iter().any(|p| !p.is_finite() || *p < 0.0) || !(sum > 0.0 && sum.is_finite()) {
                return Err(Error::invalid(
                    "categorical",
                    format!(
                        "row {row} of probabilities {:?} is {r:?}; need finite values >= 0 with a positive sum",
                        probs.shape()
                    ),
                ));
            }
        }
        let tiny = match probs.dtype() {
            DType::F32 | DType::BF16 => f64::from(f32::MIN_POSITIVE),
            DType::F64 => f64::MIN_POSITIVE,
        };
        let p = probs.clamp(tiny, f64::MAX)?;
        let norm = p.sum(&[-1], true)?;
        Categorical::from_logits(&p.div(&norm)?.log()?)
    }

    /// K.
    pub fn num_classes(&self) -> usize {
        self.logits.shape()[self.logits.rank() - 1]
    }

    /// The shape of one draw: the logits' shape without its last axis.
    pub fn batch_shape(&self) -> &[usize] {
        &self.logits.shape()[..self.logits.rank() - 1]
    }

    fn rows(&self) -> usize {
        self.batch_shape().iter().product()
    }

    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// log p(x = k) for every k: log_softmax(l), [..., K].
    pub fn log_probs(&self) -> Result<Tensor> {
        self.logits.log_softmax(-1)
    }

    /// p(x = k) for every k: softmax(l), [..., K].
    pub fn probs(&self) -> Result<Tensor> {
        self.logits.softmax(-1)
    }

    /// log p(x) for one class index per row (`values` in row-major order of the batch shape),
    /// as a tensor of the batch shape; differentiable in the logits. Errors when the count
    /// differs from the number of rows or an index is not below K.
    pub fn log_prob(&self, values: &[usize]) -> Result<Tensor> {
        let (rows, k) = (self.rows(), self.num_classes());
        if values.len() != rows {
            return Err(Error::shape(
                "categorical log_prob",
                format!(
                    "{} values for logits {:?} ({rows} rows)",
                    values.len(),
                    self.logits.shape()
                ),
            ));
        }
        let one_hot =
            Tensor::one_hot(values, k, self.logits.dtype())?.reshape(self.logits.shape())?;
        self.log_probs()?.mul(&one_hot)?.sum(&[-1], false)
    }

    /// One class per row, drawn from softmax(l) (inverse CDF, one uniform per row), in
    /// row-major order of the batch shape.
    pub fn sample(&self, rng: &mut Rng) -> Result<Vec<usize>> {
        let p = self
            .probs()?
            .detach()
            .reshape(&[self.rows(), self.num_classes()])?;
        Tensor::categorical(&p, rng)
    }

    /// H = -sum_k p_k log p_k per row, in nats, as a tensor of the batch shape.
    pub fn entropy(&self) -> Result<Tensor> {
        let logp = self.log_probs()?;
        logp.exp()?.mul(&logp)?.sum(&[-1], false)?.neg()
    }

    /// The most probable class of each row (the first one on ties).
    pub fn mode(&self) -> Vec<usize> {
        let k = self.num_classes();
        self.logits
            .to_vec_f64()
            .chunks(k)
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                        if v > bv {
                            (i, v)
                        } else {
                            (bi, bv)
                        }
                    })
                    .0
            })
            .collect()
    }
}

// ----- counting parameters ---------------------------------------------------------------------

/// Parameters of an arbitrary joint distribution over n binary pixels: 2^n - 1.
///
/// There are 2^n images; a probability table over them has 2^n entries that must sum to 1, so
/// 2^n - 1 of them are free. Exact as long as it fits a `u128` (n <= 128, where
/// 2^128 - 1 = `u128::MAX`); `None` beyond (see [`joint_binary_params_f64`]).
pub fn joint_binary_params(n: u32) -> Option<u128> {
    categorical_joint_params(2, n)
}

/// [`joint_binary_params`] as an `f64` for large n: 2^784 - 1 (binarised MNIST) is about
/// 1.0e236, still an `f64` (which reaches 1.8e308), and 2^n - 1 rounds to 2^n once n > 53.
/// Infinite from n = 1024 on.
pub fn joint_binary_params_f64(n: u32) -> f64 {
    2f64.powi(n.min(1024) as i32) - 1.0
}

/// Parameters under the chain rule with no further assumption:
/// p(x) = p(x_1) p(x_2 | x_1) ... p(x_n | x_1..x_(n-1)). The i-th conditional is one Bernoulli
/// parameter per setting of its i - 1 binary parents, 2^(i-1) numbers, and
/// 1 + 2 + ... + 2^(n-1) = 2^n - 1: the chain rule alone is exact and saves nothing; the savings
/// come from how each conditional is modelled.
pub fn chain_rule_binary_params(n: u32) -> Option<u128> {
    (0..n).try_fold(0u128, |acc, i| acc.checked_add(1u128.checked_shl(i)?))
}

/// Parameters of n independent binary pixels, p(x) = prod_i p(x_i): one probability each, n.
pub fn independent_binary_params(n: u64) -> u128 {
    u128::from(n)
}

/// Parameters of the chain rule with the (first-order) Markov assumption
/// p(x) = p(x_1) prod_(i>1) p(x_i | x_(i-1)): 1 for p(x_1), then 2 for each of the n - 1
/// conditionals (one Bernoulli parameter for x_(i-1) = 0 and one for x_(i-1) = 1): 2n - 1
/// (0 for no pixels).
pub fn markov_binary_params(n: u64) -> u128 {
    (2 * u128::from(n)).saturating_sub(1)
}

/// Parameters of a joint over n variables with k values each: k^n - 1 (`None` when that
/// overflows a `u128`). One RGB pixel is n = 3 channels of k = 256 levels.
pub fn categorical_joint_params(k: u64, n: u32) -> Option<u128> {
    let k = u128::from(k);
    if n == 0 || k == 0 {
        return Some(0);
    }
    // k^n - 1 = (k^(n-1) - 1) k + (k - 1): fits even where k^n itself does not (2^128 - 1)
    let p = k.checked_pow(n - 1)?;
    (p - 1).checked_mul(k)?.checked_add(k - 1)
}

/// Parameters of one RGB pixel as a joint over its three 8-bit channels: 256^3 - 1 = 16,777,215
/// (one categorical over 2^24 colours). The chain rule over the channels with a full table per
/// conditional, p(r) p(g | r) p(b | r, g), needs 255 + 256 * 255 + 256^2 * 255, the same number.
pub fn rgb_pixel_params() -> u128 {
    256u128.pow(3) - 1
}

/// Free parameters of a fully visible sigmoid belief net over n pixels: a bias a_i per pixel and
/// a weight W_ij for every j < i, n + n(n-1)/2 = n(n+1)/2 (307,720 for n = 784): quadratic
/// instead of exponential.
pub fn fvsbn_params(n: u64) -> u128 {
    let n = u128::from(n);
    n * (n + 1) / 2
}

/// Parameters of NADE over n pixels with H hidden units: the shared W [H, n] and V [n, H] and
/// the biases c `[H]` and b `[n]`, 2nH + n + H (785,284 for n = 784, H = 500).
pub fn nade_params(n: u64, hidden: u64) -> u128 {
    let (n, h) = (u128::from(n), u128::from(hidden));
    2 * n * h + n + h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    fn t(v: Vec<f64>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape).unwrap()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn bernoulli_log_prob_entropy_and_mode_by_hand() {
        let p = [0.2f64, 0.5, 0.9];
        let d = Bernoulli::from_probs(&t(p.to_vec(), &[3])).unwrap();
        close(&d.probs().unwrap().to_vec_f64(), &p, 1e-12);
        let lp1 = d.log_prob(&t(vec![1.0, 1.0, 1.0], &[3])).unwrap();
        let lp0 = d.log_prob(&t(vec![0.0, 0.0, 0.0], &[3])).unwrap();
        close(&lp1.to_vec_f64(), &p.map(f64::ln), 1e-12);
        close(&lp0.to_vec_f64(), &p.map(|p| (1.0 - p).ln()), 1e-12);
        let h: Vec<f64> = p
            .iter()
            .map(|p| -p * p.ln() - (1.0 - p) * (1.0 - p).ln())
            .collect();
        close(&d.entropy().unwrap().to_vec_f64(), &h, 1e-12);
        assert!((h[1] - LN_2).abs() < 1e-12);
        assert_eq!(d.mode().unwrap().to_vec_f64(), [0.0, 0.0, 1.0]);
        // extreme probabilities stay finite
        let e = Bernoulli::from_probs(&t(vec![0.0, 1.0], &[2])).unwrap();
        let lp = e.log_prob(&t(vec![0.0, 1.0], &[2])).unwrap().to_vec_f64();
        assert!(
            lp.iter().all(|v| v.is_finite() && *v <= 0.0 && *v > -1e-10),
            "{lp:?}"
        );
        // errors, not panics
        assert!(Bernoulli::from_probs(&t(vec![1.5], &[1])).is_err());
        assert!(Bernoulli::from_probs(&t(vec![f64::NAN], &[1])).is_err());
        assert!(d.log_prob(&t(vec![1.0, 0.0], &[2])).is_err());
    }

    #[test]
    fn bernoulli_log_prob_is_differentiable_in_logits_and_probs() {
        // d/dl [x l - softplus(l)] = x - sigmoid(l)
        let l = t(vec![-1.0, 0.0, 2.0], &[3]).requires_grad_(true).unwrap();
        let x = t(vec![1.0, 0.0, 1.0], &[3]);
        Bernoulli::from_logits(&l)
            .log_prob(&x)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let want: Vec<f64> = [-1.0f64, 0.0, 2.0]
            .iter()
            .zip([1.0, 0.0, 1.0])
            .map(|(l, x)| x - 1.0 / (1.0 + (-l).exp()))
            .collect();
        close(&l.grad().unwrap().to_vec_f64(), &want, 1e-12);
        // d/dp [x log p + (1 - x) log(1 - p)] = x / p - (1 - x) / (1 - p)
        let p = t(vec![0.25, 0.5], &[2]).requires_grad_(true).unwrap();
        let x = t(vec![1.0, 0.0], &[2]);
        Bernoulli::from_probs(&p)
            .unwrap()
            .log_prob(&x)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(&p.grad().unwrap().to_vec_f64(), &[4.0, -2.0], 1e-9);
    }

    #[test]
    fn bernoulli_samples_are_binary_seeded_and_have_the_right_mean() {
        let d = Bernoulli::from_probs(&Tensor::full(&[20_000], 0.3, DType::F32)).unwrap();
        let a = d.sample(&mut Rng::new(1)).unwrap();
        assert_eq!(a.shape(), &[20_000]);
        assert_eq!(a.dtype(), DType::F32);
        assert!(!a.requires_grad());
        let v = a.to_vec_f64();
        assert!(v.iter().all(|x| *x == 0.0 || *x == 1.0));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean - 0.3).abs() < 0.015, "{mean}");
        assert_eq!(v, d.sample(&mut Rng::new(1)).unwrap().to_vec_f64());
    }

    #[test]
    fn categorical_by_hand() {
        // two rows of three classes
        let probs = [0.2f64, 0.3, 0.5, 0.6, 0.3, 0.1];
        let logits = t(probs.iter().map(|p| p.ln() + 7.0).collect(), &[2, 3]);
        let d = Categorical::from_logits(&logits).unwrap();
        assert_eq!((d.num_classes(), d.batch_shape()), (3, &[2usize][..]));
        close(&d.probs().unwrap().to_vec_f64(), &probs, 1e-12);
        close(
            &d.log_prob(&[2, 1]).unwrap().to_vec_f64(),
            &[0.5f64.ln(), 0.3f64.ln()],
            1e-12,
        );
        let h = |r: &[f64]| -r.iter().map(|p| p * p.ln()).sum::<f64>();
        close(
            &d.entropy().unwrap().to_vec_f64(),
            &[h(&probs[..3]), h(&probs[3..])],
            1e-12,
        );
        assert_eq!(d.mode(), [2, 0]);
        let from_p =
            Categorical::from_probs(&t(probs.map(|p| 10.0 * p).to_vec(), &[2, 3])).unwrap();
        close(
            &from_p.log_probs().unwrap().to_vec_f64(),
            &probs.map(f64::ln),
            1e-12,
        );
        // gradient of log p(k) in the logits: onehot(k) - softmax
        let l = logits.requires_grad_(true).unwrap();
        Categorical::from_logits(&l)
            .unwrap()
            .log_prob(&[2, 1])
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(
            &l.grad().unwrap().to_vec_f64(),
            &[-0.2, -0.3, 0.5, -0.6, 0.7, -0.1],
            1e-12,
        );
        // errors, not panics
        assert!(d.log_prob(&[0]).is_err());
        assert!(d.log_prob(&[0, 3]).is_err());
        assert!(Categorical::from_logits(&Tensor::scalar(1.0, DType::F32)).is_err());
        assert!(Categorical::from_logits(&Tensor::zeros(&[2, 0], DType::F32)).is_err());
        assert!(Categorical::from_probs(&t(vec![0.0, 0.0], &[1, 2])).is_err());
        assert!(Categorical::from_probs(&t(vec![-1.0, 2.0], &[1, 2])).is_err());
    }

    #[test]
    fn categorical_samples_follow_the_probabilities() {
        let p = [0.1f64, 0.6, 0.3];
        let rows = 30_000;
        let logits = t(
            p.iter().cycle().take(3 * rows).map(|p| p.ln()).collect(),
            &[rows, 3],
        );
        let d = Categorical::from_logits(&logits).unwrap();
        let s = d.sample(&mut Rng::new(2)).unwrap();
        assert_eq!(s.len(), rows);
        for (k, want) in p.iter().enumerate() {
            let f = s.iter().filter(|&&x| x == k).count() as f64 / rows as f64;
            assert!((f - want).abs() < 0.01, "class {k}: {f} vs {want}");
        }
        assert_eq!(s, d.sample(&mut Rng::new(2)).unwrap());
    }

    #[test]
    fn the_lectures_parameter_counts() {
        assert_eq!(joint_binary_params(0), Some(0));
        assert_eq!(joint_binary_params(1), Some(1));
        assert_eq!(joint_binary_params(3), Some(7));
        assert_eq!(joint_binary_params(128), Some(u128::MAX));
        assert_eq!(joint_binary_params(129), None);
        assert_eq!(joint_binary_params_f64(10), 1023.0);
        // binarised MNIST: 2^784 - 1, about 1.0e236
        let mnist = joint_binary_params_f64(784);
        assert!(mnist.is_finite() && (mnist.log10() - 784.0 * 2f64.log10()).abs() < 1e-9);
        assert!((mnist.log10() - 236.0).abs() < 0.05, "{}", mnist.log10());
        assert!(joint_binary_params_f64(1024).is_infinite());
        for n in [0u32, 1, 2, 5, 20, 128] {
            assert_eq!(
                chain_rule_binary_params(n),
                joint_binary_params(n),
                "n = {n}"
            );
        }
        assert_eq!(chain_rule_binary_params(129), None);
        assert_eq!(independent_binary_params(784), 784);
        assert_eq!(markov_binary_params(784), 1567);
        assert_eq!(markov_binary_params(1), 1);
        assert_eq!(markov_binary_params(0), 0);
        assert_eq!(rgb_pixel_params(), 16_777_215);
        assert_eq!(categorical_joint_params(256, 3), Some(rgb_pixel_params()));
        // the chain rule over the channels with full tables: the same count
        assert_eq!(255 + 256 * 255 + 256 * 256 * 255, rgb_pixel_params());
        assert_eq!(categorical_joint_params(256, 17), None);
        assert_eq!(categorical_joint_params(256, 16), Some(u128::MAX));
        assert_eq!(categorical_joint_params(10, 3), Some(999));
        assert_eq!(categorical_joint_params(0, 3), Some(0));
        assert_eq!(fvsbn_params(784), 307_720);
        assert_eq!(fvsbn_params(3), 6);
        assert_eq!(nade_params(784, 500), 785_284);
    }
}
