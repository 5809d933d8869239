//! The variational autoencoder (Kingma & Welling 2013, "Auto-Encoding Variational Bayes").
//!
//! A Gaussian encoder q(z|x) = N(mu(x), diag(exp(logvar(x)))) and a Bernoulli decoder p(x|z) with
//! prior p(z) = N(0, I), trained by maximising the evidence lower bound
//!
//! ```text
//!   log p(x) >= ELBO(x) = E_q(z|x)[log p(x|z)]  -  KL(q(z|x) || N(0, I))
//!                          \_ reconstruction _/     \___ prior fitting ___/
//!   KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))
//! ```
//!
//! with the reparameterisation z = mu + exp(logvar / 2) * eps, eps ~ N(0, I), so the gradient
//! flows through the sample. The loss is -ELBO per image (nats), logged as its two terms.
//! `genzoo eval` adds the importance-weighted bound of Burda et al. 2015 (IWAE, k samples):
//! log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), tighter as k grows.
//!
//! Two variants: `vae` is the MLP of PyTorch's example (784-400-20), `conv-vae` a convolutional
//! encoder (two stride-2 convolutions) and decoder (two stride-2 transposed convolutions).

use crate::latent::LatentModel;
use crate::model::{draw_samples, Entry, Family, GenerativeModel, Losses, Preset};
use crate::program::data::{Batch, Pixels, Split};
use crate::program::eval::{EvalContext, Metric};
use autograd::nn::{self, Conv2d, ConvTranspose2d, Linear, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{Conv2dOptions, ConvTranspose2dOptions, DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static ENTRY: Entry = Entry {
    name: "vae",
    title: "Variational autoencoder, MLP 784-400-20, Bernoulli decoder",
    paper: "Kingma & Welling 2013, Auto-Encoding Variational Bayes",
    family: Family::LatentVariable,
    // about 50 s: past the 39 s of the early-stopped PyTorch reference (README.md)
    default_epochs: 100,
    default_batch_size: 128,
    default_config: || serde_json::to_value(VaeConfig::default()).unwrap_or_default(),
    build: |cfg, rng| {
        Ok(Box::new(Vae::new(
            ENTRY.name,
            ENTRY.parse_config(cfg)?,
            rng,
        )?))
    },
    presets: &[
        Preset {
            name: "paper",
            about: "Kingma & Welling 2013, MNIST: 500 hidden units in encoder and decoder, 20-d code, batches of 100, 300 epochs (Adam, not the paper's Adagrad); about 3.5 min",
            config: r#"{"hidden": 500, "latent": 20}"#,
            epochs: 300,
            batch_size: 100,
            patience: None,
        },
        Preset {
            name: "reference",
            about: "the PyTorch reference of README.md: 784-400-20 on thresholded digits, early-stopped after 10 epochs without a better validation loss; about 30 s on the 2-core CPU (measured: best epoch 64 of 74, IWAE k = 500 87.4 nats)",
            config: r#"{"hidden": 400, "latent": 20, "pixels": "threshold"}"#,
            epochs: 300,
            batch_size: 128,
            patience: Some(10),
        },
    ],
};

pub static CONV_ENTRY: Entry = Entry {
    name: "conv-vae",
    title: "Variational autoencoder, convolutional encoder and decoder",
    paper: "Kingma & Welling 2013, Auto-Encoding Variational Bayes",
    family: Family::LatentVariable,
    default_epochs: 10,
    default_batch_size: 128,
    default_config: || {
        serde_json::to_value(VaeConfig {
            conv: true,
            ..VaeConfig::default()
        })
        .unwrap_or_default()
    },
    build: |cfg, rng| {
        Ok(Box::new(Vae::new(
            CONV_ENTRY.name,
            CONV_ENTRY.parse_config(cfg)?,
            rng,
        )?))
    },
    presets: &[],
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaeConfig {
    pub lr: f64,
    /// Size of the latent code z.
    pub latent: usize,
    /// Width of the hidden layer (MLP) or of the fully connected layer (conv).
    pub hidden: usize,
    /// Convolutional encoder/decoder instead of the MLP.
    pub conv: bool,
    /// How training images become the Bernoulli targets (stochastic binarisation by default:
    /// early-stopped, it gives an IWAE bound of 84.7 nats on the thresholded test digits where
    /// training on them gives 87.4; evaluation always uses the fixed threshold, so likelihoods
    /// compare across models).
    pub pixels: Pixels,
    /// Importance samples of the IWAE bound in `eval`.
    pub iwae_k: usize,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            lr: 1e-3,
            latent: 20,
            hidden: 400,
            conv: false,
            pixels: Pixels::Stochastic,
            iwae_k: 64,
        }
    }
}

enum Encoder {
    Mlp { fc1: Linear },
    Conv { c1: Conv2d, c2: Conv2d, fc: Linear },
}

enum Decoder {
    Mlp {
        fc1: Linear,
        fc2: Linear,
    },
    Conv {
        fc: Linear,
        t1: ConvTranspose2d,
        t2: ConvTranspose2d,
    },
}

pub struct Vae {
    name: &'static str,
    config: VaeConfig,
    encoder: Encoder,
    mu: Linear,
    logvar: Linear,
    decoder: Decoder,
    opt: Adam,
}

const PIXELS: usize = 28 * 28;
const LOG_2PI: f64 = 1.837_877_066_409_345_5;

impl Vae {
    pub fn new(name: &'static str, config: VaeConfig, rng: &mut Rng) -> Result<Vae> {
        if config.latent == 0 || config.latent > 1024 || config.hidden == 0 || config.hidden > 8192
        {
            return Err(Error::invalid(
                name,
                format!(
                    "latent must be in 1..=1024 and hidden in 1..=8192, got {} and {}",
                    config.latent, config.hidden
                ),
            ));
        }
        if config.iwae_k == 0 {
            return Err(Error::invalid(name, "iwae_k must be at least 1"));
        }
        let (h, z, f) = (config.hidden, config.latent, DType::F32);
        let (encoder, decoder) = if config.conv {
            let down = Conv2dOptions::default().stride(2).padding(1);
            let up = ConvTranspose2dOptions::default().stride(2).padding(1);
            (
                Encoder::Conv {
                    c1: Conv2d::new(1, 32, (4, 4), down.clone(), true, f, rng)?,
                    c2: Conv2d::new(32, 64, (4, 4), down, true, f, rng)?,
                    fc: Linear::new(64 * 7 * 7, h, true, f, rng)?,
                },
                Decoder::Conv {
                    fc: Linear::new(z, 64 * 7 * 7, true, f, rng)?,
                    t1: ConvTranspose2d::new(64, 32, (4, 4), up.clone(), true, f, rng)?,
                    t2: ConvTranspose2d::new(32, 1, (4, 4), up, true, f, rng)?,
                },
            )
        } else {
            (
                Encoder::Mlp {
                    fc1: Linear::new(PIXELS, h, true, f, rng)?,
                },
                Decoder::Mlp {
                    fc1: Linear::new(z, h, true, f, rng)?,
                    fc2: Linear::new(h, PIXELS, true, f, rng)?,
                },
            )
        };
        let mu = Linear::new(h, z, true, f, rng)?;
        let logvar = Linear::new(h, z, true, f, rng)?;
        let mut vae = Vae {
            name,
            config: config.clone(),
            encoder,
            mu,
            logvar,
            decoder,
            opt: Adam::new(Vec::<(String, Tensor)>::new(), AdamConfig::default())?,
        };
        vae.opt = Adam::new(
            vae.named_parameters(),
            AdamConfig {
                lr: config.lr,
                ..AdamConfig::default()
            },
        )?;
        Ok(vae)
    }

    /// q(z|x): the mean and log-variance of the code, each [B, latent], for images [B, 1, 28, 28].
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let b = x.shape()[0];
        let h = match &self.encoder {
            Encoder::Mlp { fc1 } => fc1.forward(&x.reshape(&[b, PIXELS])?)?.relu()?,
            Encoder::Conv { c1, c2, fc } => {
                let h = c2.forward(&c1.forward(x)?.relu()?)?.relu()?;
                fc.forward(&h.flatten_from(1)?)?.relu()?
            }
        };
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    /// p(x|z): Bernoulli logits [B, 1, 28, 28] for codes [B, latent].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.shape()[0];
        match &self.decoder {
            Decoder::Mlp { fc1, fc2 } => fc2
                .forward(&fc1.forward(z)?.relu()?)?
                .reshape(&[b, 1, 28, 28]),
            Decoder::Conv { fc, t1, t2 } => {
                let h = fc.forward(z)?.relu()?.reshape(&[b, 64, 7, 7])?;
                t2.forward(&t1.forward(&h)?.relu()?)
            }
        }
    }

    /// z = mu + exp(logvar / 2) * eps, and eps.
    fn reparameterise(mu: &Tensor, logvar: &Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let eps = Tensor::randn(mu.shape(), mu.dtype(), rng);
        Ok((mu.add(&logvar.mul_scalar(0.5)?.exp()?.mul(&eps)?)?, eps))
    }

    /// The two terms of -ELBO per image, each \[B\]: reconstruction -log p(x|z) (one z per image)
    /// and the KL of q(z|x) to the prior.
    pub fn elbo_terms(&self, x: &Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let (mu, logvar) = self.encode(x)?;
        let (z, _) = Vae::reparameterise(&mu, &logvar, rng)?;
        let recon = bernoulli_nll(&self.decode(&z)?, x)?;
        Ok((recon, gaussian_kl(&mu, &logvar)?))
    }

    /// log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for `k` samples z_i ~ q(z|x):
    /// \[B\]\[k\] values. The IWAE bound is logsumexp_i(log w_i) - log k.
    pub fn log_weights(&self, x: &Tensor, k: usize, rng: &mut Rng) -> Result<Vec<Vec<f64>>> {
        let (mu, logvar) = self.encode(x)?;
        let b = x.shape()[0];
        let mut out = vec![Vec::with_capacity(k); b];
        for _ in 0..k {
            let (z, eps) = Vae::reparameterise(&mu, &logvar, rng)?;
            let log_px = bernoulli_nll(&self.decode(&z)?, x)?.neg()?;
            let d = z.shape()[1] as f64;
            let log_pz = z
                .square()?
                .sum(&[1], false)?
                .mul_scalar(-0.5)?
                .sub_scalar(0.5 * d * LOG_2PI)?;
            let log_qz = eps
                .square()?
                .add(&logvar)?
                .sum(&[1], false)?
                .mul_scalar(-0.5)?
                .sub_scalar(0.5 * d * LOG_2PI)?;
            let lw = log_px.add(&log_pz)?.sub(&log_qz)?.to_vec_f64();
            for (row, v) in out.iter_mut().zip(lw) {
                row.push(v);
            }
        }
        Ok(out)
    }
}

/// -log p(x|logits) per image for Bernoulli pixels: sum over pixels of softplus(l) - x l.
pub fn bernoulli_nll(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    let b = x.shape()[0];
    logits
        .softplus()?
        .sub(&logits.mul(x)?)?
        .reshape(&[b, x.numel() / b.max(1)])?
        .sum(&[1], false)
}

/// KL(N(mu, exp(logvar)) || N(0, I)) per row: -1/2 sum(1 + logvar - mu^2 - exp(logvar)).
pub fn gaussian_kl(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    logvar
        .add_scalar(1.0)?
        .sub(&mu.square()?)?
        .sub(&logvar.exp()?)?
        .sum(&[1], false)?
        .mul_scalar(-0.5)
}

/// log (1/k) sum exp(v), stably.
pub fn log_mean_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + (v.iter().map(|x| (x - m).exp()).sum::<f64>() / v.len() as f64).ln()
}

impl Module for Vae {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut children: Vec<(&str, &dyn Module)> = Vec::new();
        match &self.encoder {
            Encoder::Mlp { fc1 } => children.push(("encoder.fc1", fc1)),
            Encoder::Conv { c1, c2, fc } => children.extend([
                ("encoder.conv1", c1 as &dyn Module),
                ("encoder.conv2", c2),
                ("encoder.fc", fc),
            ]),
        }
        children.push(("encoder.mu", &self.mu));
        children.push(("encoder.logvar", &self.logvar));
        match &self.decoder {
            Decoder::Mlp { fc1, fc2 } => {
                children.extend([("decoder.fc1", fc1 as &dyn Module), ("decoder.fc2", fc2)])
            }
            Decoder::Conv { fc, t1, t2 } => children.extend([
                ("decoder.fc", fc as &dyn Module),
                ("decoder.deconv1", t1),
                ("decoder.deconv2", t2),
            ]),
        }
        nn::children(&children, |m| m.named_parameters())
    }
}

impl LatentModel for Vae {
    fn latent_dim(&self) -> usize {
        self.config.latent
    }

    fn input_pixels(&self) -> Pixels {
        match self.config.pixels {
            Pixels::Stochastic => Pixels::Threshold,
            p => p,
        }
    }

    fn encode_mean(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.encode(x)?.0)
    }

    fn decode_mean(&self, z: &Tensor) -> Result<Tensor> {
        self.decode(z)?.sigmoid()
    }

    fn sample_prior(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Ok(Tensor::randn(&[n, self.config.latent], DType::F32, rng))
    }
}

impl GenerativeModel for Vae {
    fn name(&self) -> &'static str {
        self.name
    }

    fn latent(&self) -> Option<&dyn LatentModel> {
        Some(self)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn pixels(&self) -> Pixels {
        self.config.pixels
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
    }

    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        vec![("optimizer", &self.opt)]
    }

    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        vec![("optimizer", &mut self.opt)]
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let x = batch.tensor(self.config.pixels, rng)?;
        let (recon, kl) = self.elbo_terms(&x, rng)?;
        let (recon, kl) = (recon.mean_all()?, kl.mean_all()?);
        let loss = recon.add(&kl)?;
        self.opt.minimize(&loss)?;
        Ok(vec![
            ("loss".into(), loss.item()?),
            ("reconstruction".into(), recon.item()?),
            ("kl".into(), kl.item()?),
        ])
    }

    /// The negative ELBO of the held-out images in the test's form (thresholded).
    fn validation_loss(&mut self, split: &Split, rng: &mut Rng) -> Result<Option<f64>> {
        let m = crate::program::eval::means_over(
            split,
            Pixels::Threshold,
            100,
            1,
            rng,
            |x, _, rng| {
                let (recon, kl) = self.elbo_terms(x, rng)?;
                Ok(vec![recon.add(&kl)?.to_vec_f64()])
            },
        )?;
        Ok(m.first().copied())
    }

    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let z = self.sample_prior(n, rng)?;
        self.decode_mean(&z)
    }

    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let k = ctx.iwae_k.unwrap_or(self.config.iwae_k);
        let iwae_name = format!("iwae_nll_k{k}");
        let names = ["neg_elbo", "reconstruction", "kl", iwae_name.as_str()];
        let mut metrics = crate::program::eval::mean_per_image(
            ctx,
            Pixels::Threshold,
            100,
            &names,
            |x, _, rng| {
                let (recon, kl) = self.elbo_terms(x, rng)?;
                let (recon, kl) = (recon.to_vec_f64(), kl.to_vec_f64());
                let neg_elbo = recon.iter().zip(&kl).map(|(r, k)| r + k).collect();
                let iwae = self
                    .log_weights(x, k, rng)?
                    .iter()
                    .map(|w| -log_mean_exp(w))
                    .collect();
                Ok(vec![neg_elbo, recon, kl, iwae])
            },
        )?;
        let samples = draw_samples(self, ctx)?;
        metrics.extend(ctx.sample_metrics(&samples, Pixels::Unit, None)?);
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_of_a_known_gaussian() {
        // KL(N(mu, s^2) || N(0, 1)) = 1/2 (s^2 + mu^2 - 1 - ln s^2); mu = 1, s^2 = e: 1/2 (e + 1 - 1 - 1)
        let mu = Tensor::from_vec(vec![1.0f64, 0.0], &[1, 2]).unwrap();
        let logvar = Tensor::from_vec(vec![1.0f64, 0.0], &[1, 2]).unwrap();
        let kl = gaussian_kl(&mu, &logvar).unwrap().item().unwrap();
        assert!(
            (kl - 0.5 * (std::f64::consts::E - 1.0)).abs() < 1e-12,
            "{kl}"
        );
    }

    #[test]
    fn bernoulli_nll_by_hand() {
        // logits 0 -> p = 1/2 -> -log p = ln 2 per pixel, whatever the pixel
        let l = Tensor::zeros(&[2, 1, 2, 2], DType::F64);
        let x = Tensor::from_vec(
            vec![0.0f64, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0],
            &[2, 1, 2, 2],
        )
        .unwrap();
        let nll = bernoulli_nll(&l, &x).unwrap().to_vec_f64();
        assert!(
            nll.iter()
                .all(|v| (v - 4.0 * std::f64::consts::LN_2).abs() < 1e-12),
            "{nll:?}"
        );
        assert!((log_mean_exp(&[0.0, 0.0]) - 0.0).abs() < 1e-15);
        assert!(
            (log_mean_exp(&[1000.0, 1000.0 + 2f64.ln()]) - (1000.0 + 1.5f64.ln())).abs() < 1e-9
        );
    }
}

#[cfg(test)]
mod training_tests {
    use super::*;
    use crate::program::data;

    fn tiny_batch() -> Batch {
        let m = data::embedded().unwrap();
        m.train.batch(&(0..64).collect::<Vec<_>>())
    }

    #[test]
    fn loss_falls_over_a_few_steps_for_both_variants() {
        for conv in [false, true] {
            let mut rng = Rng::new(3);
            let cfg = VaeConfig {
                conv,
                hidden: 64,
                latent: 4,
                pixels: Pixels::Threshold,
                ..VaeConfig::default()
            };
            let mut vae = Vae::new(ENTRY.name, cfg, &mut rng).unwrap();
            let batch = tiny_batch();
            let first = vae.train_step(&batch, &mut rng).unwrap()[0].1;
            let mut last = first;
            for _ in 0..30 {
                last = vae.train_step(&batch, &mut rng).unwrap()[0].1;
            }
            assert!(last < 0.8 * first, "conv {conv}: loss {first} -> {last}");
            let s = autograd::no_grad(|| vae.sample(5, &mut rng)).unwrap();
            assert_eq!(s.shape(), &[5, 1, 28, 28]);
            assert!(s.to_vec_f64().iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn iwae_bound_is_at_least_the_elbo_and_tightens_with_k() {
        let mut rng = Rng::new(5);
        let cfg = VaeConfig {
            hidden: 64,
            latent: 4,
            pixels: Pixels::Threshold,
            ..VaeConfig::default()
        };
        let mut vae = Vae::new(ENTRY.name, cfg, &mut rng).unwrap();
        let batch = tiny_batch();
        for _ in 0..40 {
            vae.train_step(&batch, &mut rng).unwrap();
        }
        let x = batch.tensor(Pixels::Threshold, &mut rng).unwrap();
        // log-likelihood bounds averaged over the batch (higher is tighter)
        let bound = |k: usize, rng: &mut Rng| -> f64 {
            let w = autograd::no_grad(|| vae.log_weights(&x, k, rng)).unwrap();
            w.iter().map(|row| log_mean_exp(row)).sum::<f64>() / w.len() as f64
        };
        let elbo = bound(1, &mut Rng::new(1));
        let k10 = bound(10, &mut Rng::new(2));
        let k100 = bound(100, &mut Rng::new(3));
        assert!(
            k10 > elbo && k100 > k10,
            "ELBO {elbo}, IWAE k=10 {k10}, k=100 {k100}"
        );
    }
}
