//! The neural autoregressive distribution estimator (NADE; Larochelle & Murray 2011, "The Neural
//! Autoregressive Distribution Estimator").
//!
//! Each conditional is a one-hidden-layer network whose input weights are shared across the
//! conditionals:
//!
//! ```text
//!   h_d = sigmoid(c + W[:, <d] x_<d)                   W [H, D], c [H]
//!   p(x_d = 1 | x_<d) = sigmoid(b_d + V[d, :] h_d)      V [D, H], b [D]
//! ```
//!
//! Sharing W is what makes the likelihood O(HD) instead of O(HD^2): the pre-activations obey
//! a_1 = c, a_(d+1) = a_d + W[:, d] x_d, a cumulative sum over d. Here it is computed for all d
//! at once with tensor ops, a prefix sum in two levels along the image's rows: within each row
//! a product with the strictly lower-triangular ones matrix (sum over the earlier pixels of the
//! row), plus the sum of all earlier rows (the row totals, prefix-summed with another triangular
//! matrix): a few matmuls over [B, D, H], no D sequential passes. Sampling runs the recursion
//! itself: a += W[:, d] x_d after each drawn pixel, O(H) per pixel.
//!
//! Parameters: 2DH + D + H (785,284 for 28 x 28 images and H = 500, the paper's size).

use crate::autoregressive::distributions::Bernoulli;
use crate::autoregressive::{self, Known, LikelihoodModel};
use crate::model::{Entry, Family, Preset};
use crate::program::data::Pixels;
use autograd::nn::init;
use autograd::optim::{Adam, AdamConfig};
use autograd::{DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static ENTRY: Entry = Entry {
    name: "nade",
    title: "NADE: tied-weight one-hidden-layer conditionals, O(HD) likelihood",
    paper: "Larochelle & Murray 2011, The Neural Autoregressive Distribution Estimator",
    family: Family::Likelihood,
    default_epochs: 3,
    default_batch_size: 16,
    default_config: || serde_json::to_value(NadeConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(Nade::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[
        Preset {
            name: "paper",
            about: "Larochelle & Murray 2011: H = 500 (as the defaults), 20 epochs instead of 3 (Adam, not the paper's SGD); about 19 min",
            config: r#"{"hidden": 500}"#,
            epochs: 20,
            batch_size: 16,
            patience: None,
        },
        Preset {
            name: "reference",
            about: "the PyTorch reference of README.md: H = 500 on thresholded digits, early-stopped after 2 epochs without a better validation loss, at most 30; about 10 min on the 2-core CPU (measured: best epoch 6 of 8, 79.0 nats)",
            config: r#"{"hidden": 500, "pixels": "threshold"}"#,
            epochs: 30,
            batch_size: 16,
            patience: Some(2),
        },
    ],
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NadeConfig {
    pub lr: f64,
    /// H, the hidden units of every conditional (500 in the paper).
    pub hidden: usize,
    /// Images are `image_size` x `image_size` (28 for MNIST).
    pub image_size: usize,
    /// How training images become binary. The fixed threshold by default, the form the test
    /// uses: after 3 epochs it gives 82.16 nats on the test digits where stochastic binarisation
    /// gives 84.59 (README.md has the comparison). Evaluation always uses the threshold.
    pub pixels: Pixels,
}

impl Default for NadeConfig {
    fn default() -> Self {
        NadeConfig {
            lr: 5e-3,
            hidden: 500,
            image_size: autoregressive::default_image_size(),
            pixels: Pixels::Threshold,
        }
    }
}

pub struct Nade {
    config: NadeConfig,
    /// W [H, D]: column d feeds x_d into the hidden units of every later conditional.
    w: Tensor,
    /// c [H]
    c: Tensor,
    /// V [D, H]: row d reads conditional d's hidden units.
    v: Tensor,
    /// b [D]
    b: Tensor,
    /// Strictly lower-triangular ones [n, n] (entry (i, j) is 1 for j < i), n = image_size:
    /// the prefix sums within a row and over the rows.
    lower: Tensor,
    opt: Adam,
}

/// The tied-weight running sums of NADE and RNADE, a_d = c + sum_(j<d) W[:, j] x_j, for
/// square images x [B, 1, R, R] (D = R^2 pixels), W [H, D], c [H] and `lower` =
/// [`strictly_lower`] (R), laid out as [R, B, R, H] (pixel d = (r, k) at [r, :, k, :]): the
/// paper's running sum computed as (all earlier rows) + (earlier pixels of the row).
pub(crate) fn running_sums(x: &Tensor, w: &Tensor, c: &Tensor, lower: &Tensor) -> Result<Tensor> {
    let (bs, r, h) = (x.shape()[0], x.shape()[2], w.shape()[0]);
    let k = r;
    // W^T [D, H] cut into the image's rows: [R, K, H]
    let w_rows = w.t()?.reshape(&[r, k, h])?;
    // the pixels row by row: [R, B, K]
    let x_rows = x.reshape(&[bs, r, k])?.permute(&[1, 0, 2])?;
    // each row's total sum_k' x[b, r, k'] W[:, (r, k')], [R, B, H], summed over the rows
    // above with the strictly lower-triangular ones [R, R]
    let totals = x_rows.matmul(&w_rows)?.reshape(&[r, bs * h])?;
    let above = lower.matmul(&totals)?.reshape(&[r, bs, 1, h])?.add(c)?;
    // within the row: sum_(k' < k) x[b, r, k'] W[:, (r, k')] = (L * x) W_r, one matmul
    // [B K, K] x [K, H] per row
    let within = x_rows
        .unsqueeze(2)?
        .mul(lower)?
        .reshape(&[r, bs * k, k])?
        .matmul(&w_rows)?
        .reshape(&[r, bs, k, h])?;
    within.add(&above)
}

/// Strictly lower-triangular ones [n, n] (entry (i, j) is 1 for j < i).
pub(crate) fn strictly_lower(n: usize) -> Result<Tensor> {
    let v: Vec<f32> = (0..n * n)
        .map(|k| if k % n < k / n { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, &[n, n])
}

impl Nade {
    /// W and V drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (fan_in D and H), b and c zero.
    pub fn new(config: NadeConfig, rng: &mut Rng) -> Result<Nade> {
        autoregressive::check_image_size(ENTRY.name, config.image_size)?;
        if config.hidden == 0 || config.hidden > 8192 {
            return Err(Error::invalid(
                ENTRY.name,
                format!("hidden must be in 1..=8192, got {}", config.hidden),
            ));
        }
        let (d, h) = (config.image_size * config.image_size, config.hidden);
        let w = Tensor::zeros(&[h, d], DType::F32);
        let v = Tensor::zeros(&[d, h], DType::F32);
        let bw = 1.0 / (d as f64).sqrt();
        init::uniform_(&w, -bw, bw, rng)?;
        let bv = 1.0 / (h as f64).sqrt();
        init::uniform_(&v, -bv, bv, rng)?;
        let params = [
            w,
            Tensor::zeros(&[h], DType::F32),
            v,
            Tensor::zeros(&[d], DType::F32),
        ]
        .into_iter()
        .map(|t| t.requires_grad_(true))
        .collect::<Result<Vec<_>>>()?;
        let [w, c, v, b]: [Tensor; 4] = params
            .try_into()
            .map_err(|_| Error::invalid(ENTRY.name, "four parameters"))?;
        let opt = Adam::new(
            vec![
                ("W".to_string(), w.clone()),
                ("c".to_string(), c.clone()),
                ("V".to_string(), v.clone()),
                ("b".to_string(), b.clone()),
            ],
            AdamConfig {
                lr: config.lr,
                ..AdamConfig::default()
            },
        )?;
        Ok(Nade {
            lower: strictly_lower(config.image_size)?,
            config,
            w,
            c,
            v,
            b,
            opt,
        })
    }

    /// The hidden pre-activations of every conditional, a_d = c + sum_(j<d) W[:, j] x_j, for
    /// images x [B, 1, R, K] (D = R K pixels), laid out as [R, B, K, H] (pixel d = (r, k)):
    /// `running_sums`.
    pub fn pre_activations(&self, x: &Tensor) -> Result<Tensor> {
        autoregressive::check_images(ENTRY.name, x, self.config.image_size)?;
        running_sums(x, &self.w, &self.c, &self.lower)
    }

    /// The logits of every conditional, b_d + V[d, :] sigmoid(a_d), [B, 1, R, K] for images
    /// x [B, 1, R, K].
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let (bs, r, h) = (x.shape()[0], self.config.image_size, self.config.hidden);
        // V[d, :] h_d for every image: one [B, H] x [H, 1] product per pixel d = (r, k)
        self.pre_activations(x)?
            .sigmoid()?
            .permute(&[0, 2, 1, 3])?
            .matmul(&self.v.reshape(&[r, r, h, 1])?)?
            .reshape(&[r, r, bs])?
            .permute(&[2, 0, 1])?
            .add(&self.b.reshape(&[r, r])?)?
            .reshape(x.shape())
    }
}

impl LikelihoodModel for Nade {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        vec![
            ("W".into(), self.w.clone()),
            ("c".into(), self.c.clone()),
            ("V".into(), self.v.clone()),
            ("b".into(), self.b.clone()),
        ]
    }

    fn optimizer(&self) -> &Adam {
        &self.opt
    }

    fn optimizer_mut(&mut self) -> &mut Adam {
        &mut self.opt
    }

    fn training_pixels(&self) -> Pixels {
        self.config.pixels
    }

    fn image_size(&self) -> usize {
        self.config.image_size
    }

    /// -log p(x) per image, nats, `[B]`.
    fn nll(&self, x: &Tensor) -> Result<Tensor> {
        Bernoulli::from_logits(&self.logits(x)?).nll_per_image(x)
    }

    /// Pixel by pixel with the running pre-activation a += W[:, d] x_d; returns the images and
    /// the logits each pixel was drawn from.
    fn generate(&self, known: &Known, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let (n, d, h) = (known.n(), known.pixels(), self.config.hidden);
        let wt = self.w.detach().t()?.contiguous()?; // row j: W[:, j]
        let v = self.v.detach();
        let b = self.b.detach().reshape(&[1, d])?;
        let mut a = self.c.detach().reshape(&[1, h])?.expand(&[n, h])?;
        let (mut xs, mut ls) = (Vec::with_capacity(d), Vec::with_capacity(d));
        for i in 0..d {
            let logit = a
                .sigmoid()?
                .matmul(&v.narrow(0, i, 1)?.t()?)?
                .add(&b.narrow(1, i, 1)?)?;
            let xi = known.next(i, &logit, rng)?;
            a = a.add(&xi.mul(&wt.narrow(0, i, 1)?)?)?;
            xs.push(xi);
            ls.push(logit);
        }
        let size = self.config.image_size;
        Ok((
            Tensor::concat(&xs, 1)?.reshape(&[n, 1, size, size])?,
            Tensor::concat(&ls, 1)?.reshape(&[n, 1, size, size])?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoregressive::{checks, Levels};

    fn small(size: usize) -> Nade {
        let mut rng = Rng::new(1);
        let m = Nade::new(
            NadeConfig {
                image_size: size,
                hidden: 16,
                lr: 0.02,
                ..NadeConfig::default()
            },
            &mut rng,
        )
        .unwrap();
        // larger weights than the initialisation's, so that the checks see a model that is
        // far from flat
        for p in [&m.w, &m.v, &m.b, &m.c] {
            p.copy_from(&Tensor::randn(p.shape(), DType::F32, &mut rng))
                .unwrap();
        }
        m
    }

    /// The paper's recursion, one conditional at a time, in f64: the reference for the
    /// two-level prefix sum.
    fn naive_logits(m: &Nade, x: &[f64]) -> Vec<f64> {
        let (d, h) = (m.config.image_size * m.config.image_size, m.config.hidden);
        let (w, c, v, b) = (
            m.w.to_vec_f64(),
            m.c.to_vec_f64(),
            m.v.to_vec_f64(),
            m.b.to_vec_f64(),
        );
        let mut a = c.clone();
        let mut out = Vec::new();
        for i in 0..d {
            let mut l = b[i];
            for j in 0..h {
                l += v[i * h + j] / (1.0 + (-a[j]).exp());
            }
            out.push(l);
            for j in 0..h {
                a[j] += w[j * d + i] * x[i];
            }
        }
        out
    }

    #[test]
    fn the_prefix_sum_matches_the_papers_recursion() {
        let m = small(5);
        let batch = checks::tiny_batch(5, 3);
        let x = batch.tensor(Pixels::Threshold, &mut Rng::new(0)).unwrap();
        let l = m.logits(&x).unwrap().to_vec_f64();
        let xv = x.to_vec_f64();
        for b in 0..3 {
            let want = naive_logits(&m, &xv[b * 25..(b + 1) * 25]);
            for (got, want) in l[b * 25..(b + 1) * 25].iter().zip(want) {
                assert!((got - want).abs() < 1e-4, "{got} vs {want}");
            }
        }
    }

    #[test]
    fn autoregressive_through_gradients() {
        let m = small(5);
        checks::autoregressive(5, Levels::BINARY, |x| m.logits(x));
    }

    #[test]
    fn probabilities_of_all_images_sum_to_one() {
        let m = small(3);
        checks::normalised(3, Levels::BINARY, |x| m.nll(x));
    }

    #[test]
    fn sampling_uses_the_same_conditionals_as_the_likelihood() {
        let m = small(4);
        let (x, l) =
            autograd::no_grad(|| m.generate(&Known::none(6, 16), &mut Rng::new(2))).unwrap();
        let full = autograd::no_grad(|| m.logits(&x)).unwrap();
        for (a, b) in l.to_vec_f64().iter().zip(full.to_vec_f64()) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn learns_samples_and_completes() {
        let mut m = Nade::new(
            NadeConfig {
                image_size: 6,
                hidden: 32,
                lr: 0.02,
                ..NadeConfig::default()
            },
            &mut Rng::new(0),
        )
        .unwrap();
        checks::learns_and_samples(&mut m, 6, Levels::BINARY);
        assert_eq!(
            m.weights()
                .iter()
                .map(|(_, t)| t.numel() as u128)
                .sum::<u128>(),
            crate::autoregressive::distributions::nade_params(36, 32)
        );
        let bad = NadeConfig {
            hidden: 0,
            ..NadeConfig::default()
        };
        assert!(Nade::new(bad, &mut Rng::new(0)).is_err());
    }
}
