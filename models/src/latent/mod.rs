//! What the latent-variable models (VAE, AAE, WAE) share beyond [`GenerativeModel`](crate::model::GenerativeModel): an encoder
//! and a decoder seen through [`LatentModel`], a plain ReLU [`Mlp`], and the pictures that
//! [`crate::program::run`] writes into the run folder at the end of training ([`write_pictures`]):
//!
//! | file | what |
//! |---|---|
//! | `reconstructions.png` | 32 test images in rows of 8, each row followed by the row of their reconstructions x -> z -> x' |
//! | `interpolations.png` | one row per digit d: a test image of d, the decoded codes (1 - t) z_a + t z_b for 10 values of t from 0 to 1, and a test image of digit d + 1 |
//! | `latent_scatter.png` | 2-d latents only: the codes of every test image, coloured by digit (legend on the right), over 2,000 draws from the prior in light grey |
//!
//! The hook is one optional method, [`GenerativeModel::latent`](crate::model::GenerativeModel::latent): a model that has an encoder
//! returns `Some(self)`, and the training loop calls [`write_pictures`] after the last epoch.

use crate::program::checkpoint::write_atomic as write_png;
use crate::program::data::{Mnist, Pixels, Split};
use crate::program::eval::{EvalContext, Metric};
use crate::program::image;
use autograd::nn::{self, Linear, Module};
use autograd::{no_grad, DType, Error, Result, Rng, Tensor};
use std::path::Path;

pub mod aae;
pub mod mmd;
pub mod vae;
pub mod wae;

pub const RECONSTRUCTIONS: &str = "reconstructions.png";
pub const INTERPOLATIONS: &str = "interpolations.png";
pub const LATENT_SCATTER: &str = "latent_scatter.png";

/// A model with an encoder x -> z and a decoder z -> x.
pub trait LatentModel {
    /// Size of the code z.
    fn latent_dim(&self) -> usize;

    /// The form of the test images the encoder reads (a Bernoulli model trained on stochastic
    /// binarisations reads the fixed threshold, as in its evaluation).
    fn input_pixels(&self) -> Pixels;

    /// The code of each image [B, 1, 28, 28]: [B, latent], the encoder's output (deterministic
    /// encoders) or the mean of q(z|x) (Gaussian ones).
    fn encode_mean(&self, x: &Tensor) -> Result<Tensor>;

    /// Images [B, 1, 28, 28] in [0, 1] for codes [B, latent]: the decoder's mean (Bernoulli
    /// probabilities, or the sigmoid output of a deterministic decoder).
    fn decode_mean(&self, z: &Tensor) -> Result<Tensor>;

    /// `n` draws from the prior p(z), [n, latent].
    fn sample_prior(&self, n: usize, rng: &mut Rng) -> Result<Tensor>;
}

/// A stack of fully connected layers `fc1`, `fc2`, ... with ReLU (or a leaky ReLU) between them
/// and nothing after the last: `Mlp::new(&[784, 1000, 1000, 8], rng)` is 784-1000-1000-8.
pub struct Mlp {
    layers: Vec<Linear>,
    /// The negative slope of the leaky ReLU between layers; 0 for ReLU.
    slope: f64,
}

impl Mlp {
    pub fn new(sizes: &[usize], rng: &mut Rng) -> Result<Mlp> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::invalid(
                "mlp",
                format!("needs at least two sizes, all positive, got {sizes:?}"),
            ));
        }
        let layers = sizes
            .windows(2)
            .map(|w| Linear::new(w[0], w[1], true, DType::F32, rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { layers, slope: 0.0 })
    }

    /// The same stack with LeakyReLU(`slope`) between the layers (a GAN's discriminator).
    pub fn leaky(sizes: &[usize], slope: f64, rng: &mut Rng) -> Result<Mlp> {
        Ok(Mlp {
            slope,
            ..Mlp::new(sizes, rng)?
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = if self.slope == 0.0 {
                    h.relu()?
                } else {
                    h.leaky_relu(self.slope)?
                };
            }
        }
        Ok(h)
    }
}

impl Module for Mlp {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| nn::prefixed(&format!("fc{}", i + 1), l.named_parameters()))
            .collect()
    }
}

/// What `eval` reports for an autoencoder without a likelihood (AAE, WAE), on the test split in
/// the encoder's input form:
///
/// - `reconstruction_sq_error`: ||x - dec(enc(x))||^2 per image (summed over the pixels, code =
///   the encoder's mean), comparable across models;
/// - `latent_mmd`: the MMD^2 estimate of [`mmd::mmd_imq`] between the codes of the test
///   images and as many draws from the prior: how far the aggregated posterior q(z) is from
///   p(z). Its baseline is the same statistic between two independent prior samples (about 0).
pub fn autoencoder_metrics(ctx: &mut EvalContext, model: &dyn LatentModel) -> Result<Vec<Metric>> {
    let mut codes = Vec::new();
    let mut metrics = crate::program::eval::mean_per_image(
        ctx,
        model.input_pixels(),
        100,
        &["reconstruction_sq_error"],
        |x, _, _| {
            let z = model.encode_mean(x)?;
            codes.extend(z.to_vec_f32());
            Ok(vec![squared_errors(model, x, &z)?])
        },
    )?;
    let d = model.latent_dim();
    let n = codes.len() / d.max(1);
    if n >= 2 {
        let mmd = no_grad(|| -> Result<(f64, f64)> {
            let q = Tensor::from_vec(codes, &[n, d])?;
            let p1 = model.sample_prior(n, &mut ctx.rng)?;
            let p2 = model.sample_prior(n, &mut ctx.rng)?;
            Ok((
                mmd::mmd_imq(&q, &p1, 1.0)?.item()?,
                mmd::mmd_imq(&p2, &p1, 1.0)?.item()?,
            ))
        })?;
        metrics.push(Metric::with_baseline("latent_mmd", mmd.0, mmd.1));
    }
    Ok(metrics)
}

/// The validation loss of the autoencoders (AAE, WAE): ||x - dec(enc(x))||^2 per held-out
/// image, summed over the pixels, code = the encoder's mean (the `reconstruction_sq_error` of
/// [`autoencoder_metrics`]).
pub fn reconstruction_sq_error(
    model: &dyn LatentModel,
    split: &Split,
    rng: &mut Rng,
) -> Result<f64> {
    let m =
        crate::program::eval::means_over(split, model.input_pixels(), 100, 1, rng, |x, _, _| {
            Ok(vec![squared_errors(model, x, &model.encode_mean(x)?)?])
        })?;
    Ok(m[0])
}

/// ||x - dec(z)||^2 of each image of the batch `x`, summed over its pixels.
fn squared_errors(model: &dyn LatentModel, x: &Tensor, z: &Tensor) -> Result<Vec<f64>> {
    let b = x.shape().first().copied().unwrap_or(0);
    let err = model
        .decode_mean(z)?
        .sub(x)?
        .square()?
        .reshape(&[b, x.numel() / b.max(1)])?;
    Ok(err.sum(&[1], false)?.to_vec_f64())
}

/// Seeds of the pictures' fixed draws (test binarisation where stochastic, prior points).
const PICTURE_SEED: u64 = 0x1A7E_17F1_C000_0003;
const PRIOR_POINTS: usize = 2000;

/// Writes [`RECONSTRUCTIONS`], [`INTERPOLATIONS`] and, for 2-d latents, [`LATENT_SCATTER`] into
/// `dir`, from the test split of `data`. Runs in no-grad mode; the model should be in evaluation
/// behaviour.
pub fn write_pictures(dir: &Path, model: &dyn LatentModel, data: &Mnist) -> Result<()> {
    no_grad(|| -> Result<()> {
        let test = &data.test;
        let mut rng = Rng::new(PICTURE_SEED);
        let pixels = model.input_pixels();
        // reconstructions: 4 pairs of rows (8 originals, their 8 reconstructions)
        let n = test.len().min(32);
        if n == 0 {
            return Err(Error::invalid(
                "pictures",
                "the test split is empty: nothing to reconstruct",
            ));
        }
        let x = test.head(n).tensor(pixels, &mut rng)?;
        let r = model.decode_mean(&model.encode_mean(&x)?)?;
        let mut rows = Vec::new();
        for start in (0..n).step_by(8) {
            let len = 8.min(n - start);
            rows.push(x.narrow(0, start, len)?);
            rows.push(r.narrow(0, start, len)?);
        }
        let grid = Tensor::concat(&rows, 0)?;
        write_png(
            &dir.join(RECONSTRUCTIONS),
            &image::grid_png(&grid, Some(8), 2)?,
        )?;

        // interpolations: for each digit d with a test image, the first image of d and the first of
        // the next digit present, the codes between them decoded
        const STEPS: usize = 10;
        let first: Vec<Option<usize>> = (0..10u8)
            .map(|d| test.labels.iter().position(|&l| l == d))
            .collect();
        let present: Vec<usize> = first.iter().flatten().copied().collect();
        if present.len() >= 2 {
            let pairs: Vec<(usize, usize)> = (0..present.len())
                .map(|k| (present[k], present[(k + 1) % present.len()]))
                .collect();
            let a_idx: Vec<usize> = pairs.iter().map(|p| p.0).collect();
            let b_idx: Vec<usize> = pairs.iter().map(|p| p.1).collect();
            let xa = test.batch(&a_idx).tensor(pixels, &mut rng)?;
            let xb = test.batch(&b_idx).tensor(pixels, &mut rng)?;
            let (za, zb) = (model.encode_mean(&xa)?, model.encode_mean(&xb)?);
            let p = pairs.len();
            let mut cells = Vec::with_capacity(p * (STEPS + 2));
            for k in 0..p {
                let (a, b) = (za.narrow(0, k, 1)?, zb.narrow(0, k, 1)?);
                let codes = (0..STEPS)
                    .map(|s| {
                        let t = s as f64 / (STEPS - 1) as f64;
                        a.mul_scalar(1.0 - t)?.add(&b.mul_scalar(t)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                cells.push(xa.narrow(0, k, 1)?);
                cells.push(model.decode_mean(&Tensor::concat(&codes, 0)?)?);
                cells.push(xb.narrow(0, k, 1)?);
            }
            let grid = Tensor::concat(&cells, 0)?;
            write_png(
                &dir.join(INTERPOLATIONS),
                &image::grid_png(&grid, Some(STEPS + 2), 2)?,
            )?;
        }

        // the scatter of 2-d codes
        if model.latent_dim() == 2 {
            let mut points = Vec::with_capacity(test.len());
            for idx in crate::program::data::Batches::sequential(test.len(), 250) {
                let batch = test.batch(&idx);
                let z = model
                    .encode_mean(&batch.tensor(pixels, &mut rng)?)?
                    .to_vec_f64();
                if z.len() != 2 * batch.len() {
                    return Err(Error::shape(
                        "pictures",
                        format!(
                            "a 2-d encoder gave {} values for {} images",
                            z.len(),
                            batch.len()
                        ),
                    ));
                }
                for (k, &label) in batch.labels.iter().enumerate() {
                    points.push((z[2 * k], z[2 * k + 1], usize::from(label)));
                }
            }
            let prior = model.sample_prior(PRIOR_POINTS, &mut rng)?.to_vec_f64();
            let background: Vec<(f64, f64)> = prior.chunks_exact(2).map(|c| (c[0], c[1])).collect();
            write_png(
                &dir.join(LATENT_SCATTER),
                &image::scatter_png(&points, &background, 640)?,
            )?;
        }
        Ok(())
    })
}
