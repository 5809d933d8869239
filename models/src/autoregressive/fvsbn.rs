//! The fully visible sigmoid belief network (FVSBN; Neal 1992, "Connectionist learning of belief
//! networks"; the lecture's first autoregressive model of binary MNIST).
//!
//! Each pixel, in raster order, is a logistic regression on the pixels before it:
//!
//! ```text
//!   p(x_i = 1 | x_<i) = sigmoid(a_i + sum_(j<i) W_ij x_j),      log p(x) = sum_i log p(x_i | x_<i)
//! ```
//!
//! with W strictly lower-triangular: n + n(n-1)/2 free parameters (307,720 for 28 x 28 images,
//! [`crate::autoregressive::distributions::fvsbn_params`]). All n conditionals come from one masked matmul,
//! logits = x (W * M)^T + a with M_ij = 1 for j < i (else 0), so the exact likelihood is a
//! single pass. Sampling runs the recursion directly: the pre-activations s = a + W x start at
//! a and each drawn pixel adds its column, s += x_i W[:, i], O(n) per pixel.

use crate::autoregressive::distributions::Bernoulli;
use crate::autoregressive::{self, Known, LikelihoodModel};
use crate::model::{Entry, Family, Preset};
use crate::program::data::Pixels;
use autograd::optim::{Adam, AdamConfig};
use autograd::{DType, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static ENTRY: Entry = Entry {
    name: "fvsbn",
    title:
        "Fully visible sigmoid belief net: a logistic regression per pixel on the pixels before it",
    paper: "Neal 1992, Connectionist learning of belief networks",
    family: Family::Likelihood,
    // about 100 s; the best epoch on the validation digits (158 with the defaults) is what eval
    // reads
    default_epochs: 200,
    default_batch_size: 64,
    default_config: || serde_json::to_value(FvsbnConfig::default()).unwrap_or_default(),
    build: |cfg, _rng| Ok(Box::new(Fvsbn::new(ENTRY.parse_config(cfg)?)?)),
    presets: &[Preset {
        name: "reference",
        about: "the PyTorch reference of README.md: the defaults (thresholded digits), early-stopped after 10 epochs without a better validation loss; about 70 s on the 2-core CPU (measured: best epoch 158 of 168, 81.8 nats)",
        config: "{}",
        epochs: 200,
        batch_size: 64,
        patience: Some(10),
    }],
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FvsbnConfig {
    pub lr: f64,
    /// L2 penalty on W (Adam's weight decay), against overfitting the quadratic weight count.
    pub weight_decay: f64,
    /// Images are `image_size` x `image_size` (28 for MNIST).
    pub image_size: usize,
    /// How training images become binary. The fixed threshold by default, the test's form:
    /// with the defaults it gives 81.8 nats on the test digits where stochastic binarisation
    /// gives 82.6 (and needs 230 epochs for it); README.md has the comparison.
    pub pixels: Pixels,
}

impl Default for FvsbnConfig {
    fn default() -> Self {
        FvsbnConfig {
            lr: 1e-3,
            weight_decay: 1e-4,
            image_size: autoregressive::default_image_size(),
            pixels: Pixels::Threshold,
        }
    }
}

pub struct Fvsbn {
    config: FvsbnConfig,
    /// W [n, n]; only the strictly lower triangle is used (and trained).
    weight: Tensor,
    /// a [n]
    bias: Tensor,
    /// M [n, n], M_ij = 1 for j < i: a constant.
    mask: Tensor,
    opt: Adam,
}

impl Fvsbn {
    /// Starts from W = 0 and a = 0: every pixel a fair coin.
    pub fn new(config: FvsbnConfig) -> Result<Fvsbn> {
        autoregressive::check_image_size(ENTRY.name, config.image_size)?;
        let n = config.image_size * config.image_size;
        let weight = Tensor::zeros(&[n, n], DType::F32).requires_grad_(true)?;
        let bias = Tensor::zeros(&[n], DType::F32).requires_grad_(true)?;
        let mask: Vec<f32> = (0..n * n)
            .map(|k| if k % n < k / n { 1.0 } else { 0.0 })
            .collect();
        let opt = Adam::new(
            vec![
                ("weight".to_string(), weight.clone()),
                ("bias".to_string(), bias.clone()),
            ],
            AdamConfig {
                lr: config.lr,
                weight_decay: config.weight_decay,
                ..AdamConfig::default()
            },
        )?;
        Ok(Fvsbn {
            mask: Tensor::from_vec(mask, &[n, n])?,
            config,
            weight,
            bias,
            opt,
        })
    }

    fn pixels_per_image(&self) -> usize {
        self.config.image_size * self.config.image_size
    }

    /// W * M: the weights each conditional really uses.
    fn masked_weight(&self) -> Result<Tensor> {
        self.weight.mul(&self.mask)
    }

    /// The logits of every conditional, logit_i = a_i + sum_(j<i) W_ij x_j, [B, 1, H, W] for
    /// images x [B, 1, H, W].
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        autoregressive::check_images(ENTRY.name, x, self.config.image_size)?;
        let b = x.shape()[0];
        x.reshape(&[b, self.pixels_per_image()])?
            .matmul(&self.masked_weight()?.t()?)?
            .add(&self.bias)?
            .reshape(x.shape())
    }
}

impl LikelihoodModel for Fvsbn {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
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

    /// Pixel by pixel in raster order, with the pre-activations s = a + sum_(j<i) W_(:,j) x_j
    /// carried along; returns the images and the logits each pixel was drawn from.
    fn generate(&self, known: &Known, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let (n, d) = (known.n(), known.pixels());
        let wt = self.masked_weight()?.t()?.contiguous()?; // row j: W[:, j]
        let mut s = self.bias.detach().reshape(&[1, d])?.expand(&[n, d])?;
        let (mut xs, mut ls) = (Vec::with_capacity(d), Vec::with_capacity(d));
        for i in 0..d {
            let logit = s.narrow(1, i, 1)?;
            let xi = known.next(i, &logit, rng)?;
            s = s.add(&xi.mul(&wt.narrow(0, i, 1)?)?)?;
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
    use crate::model::GenerativeModel;

    fn small(size: usize) -> Fvsbn {
        let mut m = Fvsbn::new(FvsbnConfig {
            image_size: size,
            lr: 0.05,
            ..FvsbnConfig::default()
        })
        .unwrap();
        // random weights, so that the checks see a model that is not flat
        let mut rng = Rng::new(1);
        let n = size * size;
        m.weight
            .copy_from(&Tensor::randn(&[n, n], DType::F32, &mut rng))
            .unwrap();
        m.bias
            .copy_from(&Tensor::randn(&[n], DType::F32, &mut rng))
            .unwrap();
        m.opt = Adam::new(
            LikelihoodModel::weights(&m),
            AdamConfig {
                lr: 0.05,
                ..AdamConfig::default()
            },
        )
        .unwrap();
        m
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
        let mut m = small(6);
        checks::learns_and_samples(&mut m, 6, Levels::BINARY);
        assert!(m
            .train_step(&checks::tiny_batch(5, 4), &mut Rng::new(0))
            .is_err());
        assert!(Fvsbn::new(FvsbnConfig {
            image_size: 0,
            ..FvsbnConfig::default()
        })
        .is_err());
    }
}
