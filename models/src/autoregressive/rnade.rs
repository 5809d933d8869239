//! The real-valued neural autoregressive density estimator (RNADE; Uria, Murray & Larochelle
//! 2013, "RNADE: The real-valued neural autoregressive density-estimator").
//!
//! NADE's tied hidden layer, with every conditional a mixture of K Gaussians:
//!
//! ```text
//!   a_d = c + W[:, <d] y_<d                         W [H, D], c [H]: NADE's running sum
//!   h_d = sigmoid(rho_d a_d)                        rho [D]: the paper's activation rescaling
//!   [alpha_d, mu_d, log sigma_d] = V_d^T h_d + b_d  V [D, H, 3K], b [D, 3K]
//!   p(z_d | y_<d) = sum_k softmax(alpha_d)_k N(z_d; mu_(d,k), sigma_(d,k)^2)
//! ```
//!
//! It is a density over continuous pixels, so it trains on dequantised digits,
//! y = (byte + u) / 256 with u ~ U(0, 1) drawn afresh every step. The Gaussians live in logit
//! space, z = logit(lambda + (1 - 2 lambda) y) with lambda = 1e-6 (as MAF and Real NVP model
//! pixels), and the density of y is that of z times the Jacobian:
//!
//! ```text
//!   log p(y) = sum_d [log p(z_d | y_<d) + log(1 - 2 lambda) - log s_d - log(1 - s_d)],
//!   s_d = lambda + (1 - 2 lambda) y_d.
//! ```
//!
//! Why: in pixel space most pixels sit inside the cell of byte 0 or 255, 1/256 wide, so the
//! mixtures need components that narrow, and every Adam step moved their means by a good part
//! of a cell: the bound wobbled by tens of nats a step and one step on a batch of a single
//! digit (an epoch's last) cost 190 nats (measured). In logit space those cells are several
//! units wide. The context fed to the hidden layer is y itself (any function of y_<d keeps the
//! model a normalised density).
//!
//! The figure is a bound on the discrete data's NLL (Theis, van den Oord & Bethge 2016): since
//! p_discrete(byte) is the integral of p over the byte's cell and log is concave,
//!
//! ```text
//!   -log P(bytes) <= E_u[-log p(y)] + D log 256,
//! ```
//!
//! estimated with one u per test image, so it compares in nats and bits per dimension with the
//! categorical models on the same test digits.
//!
//! Sampling runs the recursion pixel by pixel: pick a component, draw z from its Gaussian, map
//! it back to y, add W[:, d] y_d to the running sum; the pictures clamp y to [0, 1].

use crate::autoregressive::levels::{independent_baseline, Levels};
use crate::autoregressive::nade::{running_sums, strictly_lower};
use crate::autoregressive::{self, distributions::Categorical};
use crate::model::{draw_samples, Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Pixels, Split};
use crate::program::eval::{means_over, EvalContext, Metric};
use autograd::nn::init;
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static ENTRY: Entry = Entry {
    name: "rnade",
    title: "RNADE: NADE's tied hidden layer, a mixture of K Gaussians per conditional, dequantised grey pixels",
    paper: "Uria, Murray & Larochelle 2013, RNADE: The real-valued neural autoregressive density-estimator",
    family: Family::Likelihood,
    default_epochs: 30,
    default_batch_size: 32,
    default_config: || serde_json::to_value(RnadeConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(Rnade::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RnadeConfig {
    pub lr: f64,
    /// H, the hidden units shared by the conditionals.
    pub hidden: usize,
    /// K, the Gaussians of each conditional's mixture.
    pub components: usize,
    /// Images are `image_size` x `image_size` (28 for MNIST).
    pub image_size: usize,
}

impl Default for RnadeConfig {
    fn default() -> Self {
        RnadeConfig {
            lr: 1e-3,
            // H = 200 reached 1.394 bits/dim in 25 epochs where H = 50 reached 1.497 in 20
            // (README.md)
            hidden: 200,
            components: 10,
            image_size: autoregressive::default_image_size(),
        }
    }
}

pub struct Rnade {
    config: RnadeConfig,
    /// W [H, D]
    w: Tensor,
    /// c [H]
    c: Tensor,
    /// rho [D, 1, 1]
    rho: Tensor,
    /// V [D, H, 3K]: the columns of alpha, mu and log sigma
    v: Tensor,
    /// b [D, 1, 3K]
    b: Tensor,
    lower: Tensor,
    opt: Adam,
}

/// The logit transform's margin: z = logit(lambda + (1 - 2 lambda) y) stays finite at y = 0
/// and 1 (MAF's and Real NVP's value for MNIST).
const LAMBDA: f64 = 1e-6;

/// y in [0, 1] from z: (sigmoid(z) - lambda) / (1 - 2 lambda).
fn pixel_of_logit(z: f32) -> f32 {
    let s = 1.0 / (1.0 + (-z).exp());
    (s - LAMBDA as f32) / (1.0 - 2.0 * LAMBDA as f32)
}

/// log N(x; mu, sigma^2) = -((x - mu) / sigma)^2 / 2 - log sigma - log(2 pi) / 2.
fn log_normal(x: &Tensor, mu: &Tensor, log_sigma: &Tensor) -> Result<Tensor> {
    let z = x.sub(mu)?.mul(&log_sigma.neg()?.exp()?)?;
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    z.mul(&z)?
        .mul_scalar(-0.5)?
        .sub(log_sigma)?
        .add_scalar(-half_log_2pi)
}

impl Rnade {
    /// W and V from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), rho 1, c 0; the mixtures start with
    /// their means spread evenly over [-8, 8] in logit space (bytes 0 and 255 land near -6 and
    /// 6) and sigma 1.
    pub fn new(config: RnadeConfig, rng: &mut Rng) -> Result<Rnade> {
        autoregressive::check_image_size(ENTRY.name, config.image_size)?;
        let (h, k) = (config.hidden, config.components);
        if !(1..=4096).contains(&h) || !(1..=64).contains(&k) {
            return Err(Error::invalid(
                ENTRY.name,
                format!("hidden must be in 1..=4096 and components in 1..=64, got {h} and {k}"),
            ));
        }
        let d = config.image_size * config.image_size;
        let f = DType::F32;
        let w = Tensor::zeros(&[h, d], f);
        init::uniform_(&w, -1.0 / (d as f64).sqrt(), 1.0 / (d as f64).sqrt(), rng)?;
        let v = Tensor::zeros(&[d, h, 3 * k], f);
        init::uniform_(&v, -1.0 / (h as f64).sqrt(), 1.0 / (h as f64).sqrt(), rng)?;
        let mut b = vec![0f32; d * 3 * k];
        for row in b.chunks_mut(3 * k) {
            for j in 0..k {
                let t = if k == 1 {
                    0.5
                } else {
                    j as f32 / (k - 1) as f32
                };
                row[k + j] = -8.0 + 16.0 * t;
            }
        }
        let params = [
            w,
            Tensor::zeros(&[h], f),
            Tensor::ones(&[d, 1, 1], f),
            v,
            Tensor::from_vec(b, &[d, 1, 3 * k])?,
        ]
        .into_iter()
        .map(|t| t.requires_grad_(true))
        .collect::<Result<Vec<_>>>()?;
        let [w, c, rho, v, b]: [Tensor; 5] = params
            .try_into()
            .map_err(|_| Error::invalid(ENTRY.name, "five parameters"))?;
        let mut model = Rnade {
            lower: strictly_lower(config.image_size)?,
            config,
            w,
            c,
            rho,
            v,
            b,
            opt: Adam::new(Vec::<(String, Tensor)>::new(), AdamConfig::default())?,
        };
        model.opt = Adam::new(
            model.weights(),
            AdamConfig {
                lr: model.config.lr,
                ..AdamConfig::default()
            },
        )?;
        Ok(model)
    }

    /// The mixture of every conditional for images x [B, 1, R, R]: (log weights, means,
    /// log sigmas), each [D, B, K] with pixel d in raster order.
    pub fn mixtures(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        autoregressive::check_images(ENTRY.name, x, self.config.image_size)?;
        let (bs, h, k) = (x.shape()[0], self.config.hidden, self.config.components);
        let d = self.config.image_size * self.config.image_size;
        // [R, B, R, H] -> [D, B, H]
        let a = running_sums(x, &self.w, &self.c, &self.lower)?
            .permute(&[0, 2, 1, 3])?
            .reshape(&[d, bs, h])?;
        let out = a.mul(&self.rho)?.sigmoid()?.matmul(&self.v)?.add(&self.b)?;
        Ok((
            out.narrow(2, 0, k)?.log_softmax(2)?,
            out.narrow(2, k, k)?,
            out.narrow(2, 2 * k, k)?,
        ))
    }

    /// -log p(y) per image, nats, `[B]`, for continuous images y [B, 1, R, R] with pixels in
    /// (0, 1): the mixtures' density of z = logit(s), s = lambda + (1 - 2 lambda) y, times the
    /// Jacobian dz/dy = (1 - 2 lambda) / (s (1 - s)).
    pub fn nll_continuous(&self, y: &Tensor) -> Result<Tensor> {
        let (log_weights, mu, log_sigma) = self.mixtures(y)?;
        let bs = y.shape()[0];
        let d = self.config.image_size * self.config.image_size;
        let s = y.mul_scalar(1.0 - 2.0 * LAMBDA)?.add_scalar(LAMBDA)?;
        let (log_s, log_1ms) = (s.log()?, s.neg()?.add_scalar(1.0)?.log()?);
        let z = log_s.sub(&log_1ms)?;
        // z as [D, B, 1], beside its conditional's K components
        let zd = z.reshape(&[bs, d])?.t()?.reshape(&[d, bs, 1])?;
        let log_pz = log_weights
            .add(&log_normal(&zd, &mu, &log_sigma)?)?
            .logsumexp(&[2], false)?
            .sum(&[0], false)?;
        let log_jacobian = log_s
            .add(&log_1ms)?
            .neg()?
            .add_scalar((1.0 - 2.0 * LAMBDA).ln())?
            .reshape(&[bs, d])?
            .sum(&[1], false)?;
        log_pz.add(&log_jacobian)?.neg()
    }

    /// The dequantisation bound on -log P(bytes) per image, nats, `[B]`, with one u ~ U(0, 1)
    /// per pixel: -log p((byte + u) / 256) + D log 256.
    fn nll_bound(&self, bytes: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let d = (self.config.image_size * self.config.image_size) as f64;
        self.nll_continuous(&dequantise(bytes, rng)?)?
            .add_scalar(d * 256f64.ln())
    }

    /// Draws images pixel by pixel, the first `known` pixels of `given` (continuous values)
    /// held fixed: each draw a component, a z from its Gaussian, and y = (sigmoid(z) - lambda)
    /// / (1 - 2 lambda), within rounding of [0, 1].
    fn generate(&self, n: usize, given: Option<(&Tensor, usize)>, rng: &mut Rng) -> Result<Tensor> {
        let (h, k, s) = (
            self.config.hidden,
            self.config.components,
            self.config.image_size,
        );
        let d = s * s;
        let wt = self.w.detach().t()?.contiguous()?; // row j: W[:, j]
        let rho = self.rho.detach().reshape(&[d])?.to_vec_f32();
        let v = self.v.detach();
        let b = self.b.detach();
        let known = given
            .map(|(g, count)| Ok::<_, Error>((g.reshape(&[n, d])?.to_vec_f32(), count)))
            .transpose()?;
        let mut a = self.c.detach().reshape(&[1, h])?.expand(&[n, h])?;
        let mut xs = Vec::with_capacity(d);
        for i in 0..d {
            let xi = match &known {
                Some((g, count)) if i < *count => {
                    Tensor::from_vec((0..n).map(|j| g[j * d + i]).collect(), &[n, 1])?
                }
                _ => {
                    let out = a
                        .mul_scalar(f64::from(rho[i]))?
                        .sigmoid()?
                        .matmul(&v.narrow(0, i, 1)?.reshape(&[h, 3 * k])?)?
                        .add(&b.narrow(0, i, 1)?.reshape(&[1, 3 * k])?)?
                        .to_vec_f32();
                    let logits = Tensor::from_vec(
                        out.chunks(3 * k).flat_map(|r| r[..k].to_vec()).collect(),
                        &[n, k],
                    )?;
                    let picked = Categorical::from_logits(&logits)?.sample(rng)?;
                    let draws = picked
                        .iter()
                        .enumerate()
                        .map(|(j, &c)| {
                            let row = &out[j * 3 * k..(j + 1) * 3 * k];
                            pixel_of_logit(row[k + c] + row[2 * k + c].exp() * rng.normal() as f32)
                        })
                        .collect();
                    Tensor::from_vec(draws, &[n, 1])?
                }
            };
            a = a.add(&xi.mul(&wt.narrow(0, i, 1)?)?)?;
            xs.push(xi);
        }
        Tensor::concat(&xs, 1)?.reshape(&[n, 1, s, s])
    }
}

/// Grey images byte / 255 [B, 1, H, W] dequantised: (byte + u) / 256, u ~ U(0, 1) per pixel.
pub fn dequantise(unit: &Tensor, rng: &mut Rng) -> Result<Tensor> {
    let y = unit
        .to_vec_f32()
        .into_iter()
        .map(|v| ((v * 255.0).round() + rng.uniform_f32()) / 256.0)
        .collect();
    Tensor::from_vec(y, unit.shape())
}

impl GenerativeModel for Rnade {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn pixels(&self) -> Pixels {
        Pixels::Unit
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        vec![
            ("W".into(), self.w.clone()),
            ("c".into(), self.c.clone()),
            ("rho".into(), self.rho.clone()),
            ("V".into(), self.v.clone()),
            ("b".into(), self.b.clone()),
        ]
    }

    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        vec![("optimizer", &self.opt)]
    }

    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        vec![("optimizer", &mut self.opt)]
    }

    /// One step of maximum likelihood on freshly dequantised digits; the loss is the bound in
    /// nats per image.
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let loss = self.nll_bound(&batch.unit()?, rng)?.mean_all()?;
        self.opt.minimize(&loss)?;
        Ok(vec![("loss".into(), loss.item()?)])
    }

    /// `n` images drawn pixel by pixel, clamped to [0, 1].
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        self.generate(n, None, rng)?.clamp(0.0, 1.0)
    }

    /// Grey images in [0, 1] with all but their first `known` pixels drawn again (the known
    /// ones at their cells' centres, (byte + 1/2) / 256), clamped to [0, 1].
    fn complete(&mut self, images: &Tensor, known: usize, rng: &mut Rng) -> Result<Tensor> {
        let s = self.config.image_size;
        autoregressive::check_images(ENTRY.name, images, s)?;
        if known > s * s {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "cannot keep {known} known pixels of a {}-pixel image",
                    s * s
                ),
            ));
        }
        let bytes = Levels::new(ENTRY.name, 256)?.indices_of_grey(images)?;
        let centres = bytes.iter().map(|&b| (b as f32 + 0.5) / 256.0).collect();
        let given = Tensor::from_vec(centres, images.shape())?;
        let out = self.generate(images.shape()[0], Some((&given, known)), rng)?;
        // the known pixels come back as they were given
        let (g, o) = (images.to_vec_f32(), out.clamp(0.0, 1.0)?.to_vec_f32());
        let d = s * s;
        let kept = o
            .iter()
            .enumerate()
            .map(|(j, &v)| if j % d < known { g[j] } else { v })
            .collect();
        Tensor::from_vec(kept, images.shape())
    }

    /// The bound on the held-out digits' NLL, nats per image.
    fn validation_loss(&mut self, split: &Split, rng: &mut Rng) -> Result<Option<f64>> {
        let m = means_over(split, Pixels::Unit, 100, 1, rng, |x, _, rng| {
            Ok(vec![self.nll_bound(x, rng)?.to_vec_f64()])
        })?;
        Ok(m.first().copied())
    }

    /// The bound on the test NLL, nats per image and bits per dimension, beside the 256-level
    /// independent baseline.
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let data = ctx.data;
        let nats = means_over(
            &data.test,
            Pixels::Unit,
            100,
            1,
            &mut ctx.rng,
            |x, _, rng| Ok(vec![self.nll_bound(x, rng)?.to_vec_f64()]),
        )?[0];
        let base = independent_baseline(Levels::new(ENTRY.name, 256)?, &data.train, &data.test)?;
        let [nll, bits] = autoregressive::nll_metrics(nats, base, data.test.pixels());
        Ok(vec![
            nll.detail("dequantisation bound, one u per test digit"),
            bits,
        ])
    }

    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut metrics = self.epoch_metrics(ctx)?;
        let samples = draw_samples(self, ctx)?;
        metrics.extend(ctx.sample_metrics(&samples, Pixels::Unit, None)?);
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoregressive::checks;
    use autograd::no_grad;

    fn small(size: usize, components: usize) -> Rnade {
        let config = RnadeConfig {
            hidden: 8,
            components,
            image_size: size,
            lr: 0.01,
        };
        let mut rng = Rng::new(2);
        let m = Rnade::new(config, &mut rng).unwrap();
        // weights away from the initialisation (rho not 1), so that every parameter matters
        for p in [&m.w, &m.c, &m.rho, &m.v, &m.b] {
            let noise = Tensor::randn(p.shape(), DType::F32, &mut rng)
                .mul_scalar(0.3)
                .unwrap();
            p.copy_from(&p.add(&noise).unwrap()).unwrap();
        }
        m
    }

    fn logit_of(y: f64) -> f64 {
        let s = LAMBDA + (1.0 - 2.0 * LAMBDA) * y;
        (s / (1.0 - s)).ln()
    }

    /// The paper's recursion, one conditional at a time, in f64: log p(y) of one image.
    fn naive_log_density(m: &Rnade, y: &[f64]) -> f64 {
        let (h, k) = (m.config.hidden, m.config.components);
        let d = y.len();
        let (w, c, rho, v, b) = (
            m.w.to_vec_f64(),
            m.c.to_vec_f64(),
            m.rho.to_vec_f64(),
            m.v.to_vec_f64(),
            m.b.to_vec_f64(),
        );
        let mut a = c.clone();
        let mut total = 0.0;
        for i in 0..d {
            let hid: Vec<f64> = a
                .iter()
                .map(|&z| 1.0 / (1.0 + (-rho[i] * z).exp()))
                .collect();
            let out: Vec<f64> = (0..3 * k)
                .map(|j| {
                    b[i * 3 * k + j]
                        + (0..h)
                            .map(|u| hid[u] * v[(i * h + u) * 3 * k + j])
                            .sum::<f64>()
                })
                .collect();
            let norm: f64 = out[..k].iter().map(|l| l.exp()).sum();
            let p: f64 = (0..k)
                .map(|j| {
                    let (mu, sigma) = (out[k + j], out[2 * k + j].exp());
                    let z = (logit_of(y[i]) - mu) / sigma;
                    out[j].exp() / norm * (-0.5 * z * z).exp()
                        / (sigma * (2.0 * std::f64::consts::PI).sqrt())
                })
                .sum();
            let sd = LAMBDA + (1.0 - 2.0 * LAMBDA) * y[i];
            total += p.ln() + (1.0 - 2.0 * LAMBDA).ln() - sd.ln() - (1.0 - sd).ln();
            for (u, au) in a.iter_mut().enumerate() {
                *au += w[u * d + i] * y[i];
            }
        }
        total
    }

    #[test]
    fn density_matches_the_papers_recursion() {
        let m = small(3, 3);
        let mut rng = Rng::new(7);
        let y: Vec<f32> = (0..2 * 9).map(|_| rng.uniform_f32()).collect();
        let x = Tensor::from_vec(y.clone(), &[2, 1, 3, 3]).unwrap();
        let nll = no_grad(|| m.nll_continuous(&x)).unwrap().to_vec_f64();
        for (b, got) in nll.iter().enumerate() {
            let img: Vec<f64> = y[b * 9..(b + 1) * 9]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let want = -naive_log_density(&m, &img);
            assert!(
                (got - want).abs() < 1e-3 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn an_images_density_does_not_depend_on_its_batch() {
        // full size, the default hidden units: the shapes the training steps (batch 32) and the
        // evaluation (batch 100) run
        let config = RnadeConfig {
            hidden: 50,
            ..RnadeConfig::default()
        };
        let m = Rnade::new(config, &mut Rng::new(5)).unwrap();
        let mut rng = Rng::new(6);
        for p in [&m.w, &m.c, &m.rho, &m.v, &m.b] {
            let noise = Tensor::randn(p.shape(), DType::F32, &mut rng);
            p.copy_from(&p.add(&noise).unwrap()).unwrap();
        }
        let y: Vec<f32> = (0..100 * 784).map(|_| rng.uniform_f32()).collect();
        let all = Tensor::from_vec(y.clone(), &[100, 1, 28, 28]).unwrap();
        let whole = no_grad(|| m.nll_continuous(&all)).unwrap().to_vec_f64();
        let first = Tensor::from_vec(y[..32 * 784].to_vec(), &[32, 1, 28, 28]).unwrap();
        let with_grad = m.nll_continuous(&first).unwrap().to_vec_f64();
        let one = Tensor::from_vec(y[..784].to_vec(), &[1, 1, 28, 28]).unwrap();
        let alone = no_grad(|| m.nll_continuous(&one)).unwrap().item().unwrap();
        for (b, v) in with_grad.iter().enumerate() {
            assert!(
                (v - whole[b]).abs() < 1e-5 * whole[b].abs(),
                "image {b}: {v} vs {}",
                whole[b]
            );
        }
        assert!(
            (alone - whole[0]).abs() < 1e-5 * whole[0].abs(),
            "{alone} vs {}",
            whole[0]
        );
    }

    #[test]
    fn autoregressive_through_gradients() {
        // the mixture of pixel i reads no pixel j >= i
        let m = small(4, 2);
        let x = Tensor::from_vec(
            (0..16).map(|i| (i as f32 * 0.37) % 1.0).collect(),
            &[1, 1, 4, 4],
        )
        .unwrap()
        .requires_grad_(true)
        .unwrap();
        let (lw, mu, ls) = m.mixtures(&x).unwrap();
        for i in 0..16 {
            let out = lw
                .narrow(0, i, 1)
                .unwrap()
                .add(&mu.narrow(0, i, 1).unwrap())
                .unwrap()
                .add(&ls.narrow(0, i, 1).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let g = autograd::grad(&[out], &[], std::slice::from_ref(&x), false).unwrap();
            let g = g[0]
                .as_ref()
                .map(|t| t.to_vec_f64())
                .unwrap_or(vec![0.0; 16]);
            assert!(g[i..].iter().all(|v| *v == 0.0), "pixel {i}: {g:?}");
            if i > 0 {
                assert!(g[i - 1] != 0.0, "pixel {i} ignores pixel {}", i - 1);
            }
        }
    }

    #[test]
    fn one_dimensional_density_is_the_mixture_through_the_jacobian() {
        // a 1x1 image: p(y) is the first conditional alone. Its integral over (0, 1), taken
        // over a grid of z = logit(s) as the integral of p(y(z)) dy/dz, equals the mixture's
        // mass on the z that y in (0, 1) reaches, [logit(lambda), logit(1 - lambda)]; the
        // mixture itself has mass 1 over the real line
        let m = small(1, 3);
        let x = Tensor::zeros(&[1, 1, 1, 1], DType::F32);
        let (lw, mu, ls) = no_grad(|| m.mixtures(&x)).unwrap();
        let (lw, mu, ls) = (lw.to_vec_f64(), mu.to_vec_f64(), ls.to_vec_f64());
        let pdf = |z: f64| -> f64 {
            (0..3)
                .map(|k| {
                    let (sd, w) = (ls[k].exp(), lw[k].exp());
                    let u = (z - mu[k]) / sd;
                    w * (-0.5 * u * u).exp() / (sd * (2.0 * std::f64::consts::PI).sqrt())
                })
                .sum()
        };
        let integral = |lo: f64, hi: f64, f: &dyn Fn(f64) -> f64| {
            let n = 20_000;
            let h = (hi - lo) / n as f64;
            (0..n)
                .map(|j| f(lo + (j as f64 + 0.5) * h) * h)
                .sum::<f64>()
        };
        assert!((integral(-200.0, 200.0, &pdf) - 1.0).abs() < 1e-6);
        let edge = ((1.0 - LAMBDA) / LAMBDA).ln();
        let inside = integral(-edge, edge, &pdf);
        let n = 4000;
        let h = 2.0 * edge / n as f64;
        let zs: Vec<f64> = (0..n).map(|j| -edge + (j as f64 + 0.5) * h).collect();
        let ys: Vec<f32> = zs.iter().map(|&z| pixel_of_logit(z as f32)).collect();
        let x = Tensor::from_vec(ys, &[n, 1, 1, 1]).unwrap();
        let nll = no_grad(|| m.nll_continuous(&x)).unwrap().to_vec_f64();
        let through_y: f64 = nll
            .iter()
            .zip(&zs)
            .map(|(l, &z)| {
                let sig = 1.0 / (1.0 + (-z).exp());
                // dy/dz = s (1 - s) / (1 - 2 lambda)
                (-l).exp() * sig * (1.0 - sig) / (1.0 - 2.0 * LAMBDA) * h
            })
            .sum();
        assert!(inside <= 1.0 && inside > 0.5, "{inside}");
        assert!((through_y - inside).abs() < 2e-3, "{through_y} vs {inside}");
    }

    #[test]
    fn learns_samples_and_completes() {
        let mut m = small(6, 2);
        let batch = checks::tiny_batch(6, 32);
        let mut rng = Rng::new(3);
        let first = m.train_step(&batch, &mut rng).unwrap()[0].1;
        let mut last = first;
        for _ in 0..40 {
            last = m.train_step(&batch, &mut rng).unwrap()[0].1;
        }
        assert!(last < first - 10.0, "loss {first} -> {last}");
        let s = no_grad(|| m.sample(4, &mut rng)).unwrap();
        assert_eq!(s.shape(), &[4, 1, 6, 6]);
        assert!(s.to_vec_f64().iter().all(|v| (0.0..=1.0).contains(v)));
        let x = batch.unit().unwrap();
        let c = no_grad(|| m.complete(&x, 18, &mut rng)).unwrap();
        let (cv, xv) = (c.to_vec_f32(), x.to_vec_f32());
        for b in 0..32 {
            assert_eq!(cv[b * 36..b * 36 + 18], xv[b * 36..b * 36 + 18]);
        }
        assert!(no_grad(|| m.complete(&x, 37, &mut rng)).is_err());
        assert!(no_grad(|| m.complete(&x.add_scalar(2.0).unwrap(), 18, &mut rng)).is_err());
        let bad = RnadeConfig {
            components: 0,
            ..RnadeConfig::default()
        };
        assert!(Rnade::new(bad, &mut Rng::new(0)).is_err());
    }

    #[test]
    fn the_bound_adds_d_log_256_to_the_density_of_dequantised_bytes() {
        let m = small(2, 2);
        let x =
            Tensor::from_vec(vec![0.0, 1.0, 128.0 / 255.0, 3.0 / 255.0], &[1, 1, 2, 2]).unwrap();
        let bound = no_grad(|| m.nll_bound(&x, &mut Rng::new(1)))
            .unwrap()
            .item()
            .unwrap();
        let y = dequantise(&x, &mut Rng::new(1)).unwrap();
        let yv = y.to_vec_f32();
        let cells = [0.0, 255.0, 128.0, 3.0];
        for (v, c) in yv.iter().zip(cells) {
            assert!(
                *v >= c / 256.0 && *v < (c + 1.0) / 256.0,
                "{v} outside cell {c}"
            );
        }
        let dens = no_grad(|| m.nll_continuous(&y)).unwrap().item().unwrap();
        assert!((bound - dens - 4.0 * 256f64.ln()).abs() < 1e-3);
    }
}
