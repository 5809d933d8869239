//! Wasserstein autoencoders (Tolstikhin, Bousquet, Gelly & Schoelkopf 2017, "Wasserstein
//! Auto-Encoders").
//!
//! A WAE minimises a relaxation of the optimal-transport cost W_c(P_X, P_G) between the data and
//! the model P_G = decoder G applied to the prior P_Z = N(0, sigma_z^2 I):
//!
//! ```text
//!   D_WAE(P_X, P_G) = inf_Q  E_{P_X} E_{Q(Z|X)}[ c(X, G(Z)) ]  +  lambda * D_Z(Q_Z, P_Z)
//! ```
//!
//! with a deterministic encoder Q, the cost c(x, y) = ||x - y||^2 and a divergence D_Z between the
//! aggregated posterior Q_Z (the codes of the data) and the prior. Unlike the VAE's KL term, which
//! pulls every q(z|x) toward P_Z, D_Z constrains only the aggregate, so codes of different images
//! may stay apart and reconstructions sharp. Two choices of D_Z, one `genzoo` model each:
//!
//! - `wae-mmd` (Algorithm 2): the maximum mean discrepancy with the inverse multiquadratic kernel
//!   k(x, y) = C / (C + ||x - y||^2), estimated without bias on n codes z~_i and n prior draws z_i:
//!
//!   ```text
//!   MMD = 1/(n(n-1)) sum_{l != j} k(z_l, z_j) + 1/(n(n-1)) sum_{l != j} k(z~_l, z~_j)
//!         - 2/n^2 sum_{l, j} k(z_l, z~_j)
//!   ```
//!
//!   with C = 2 d sigma_z^2 (the paper's choice, d the latent size), summed over the scales
//!   C x {0.1, 0.2, 0.5, 1, 2, 5, 10} as the authors' code does ([`mmd_imq`]);
//! - `wae-gan` (Algorithm 1): a discriminator D in latent space, trained to tell prior draws
//!   from codes, and the penalty -lambda log D(z~) on the encoder (non-saturating, as in the
//!   authors' code). The paper also scales D's loss by lambda; under Adam that changes only the
//!   logged value, so `d_loss` is logged unscaled.
//!
//! The paper's MNIST settings are the defaults: an 8-d code, sigma_z^2 = 1, lambda = 10, a
//! deterministic encoder, squared-error reconstruction, Adam (beta1 0.5) with learning rate 1e-3
//! for encoder and decoder and 5e-4 for the adversary, batches of 100. As in the authors' code for
//! MNIST, the squared error enters the objective scaled by 0.05 (`recon_scale`; their `l2sq`
//! cost), which sets the balance with lambda = 10. The networks are MLPs (784-1000-1000-8 and
//! back, discriminator 8-512-512-512-1) rather than the paper's DCGAN-style convolutions, to train
//! in minutes on a CPU; decoder outputs go through a sigmoid (grey images in [0, 1]).

use crate::adversarial::bce_to;
use crate::latent::mmd::mmd_imq;
use crate::latent::{LatentModel, Mlp};
use crate::model::{draw_samples, Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Pixels, Split};
use crate::program::eval::{EvalContext, Metric};
use autograd::nn::{self, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static MMD_ENTRY: Entry = Entry {
    name: "wae-mmd",
    title: "Wasserstein autoencoder, MMD penalty (inverse multiquadratic kernel), 8-d code",
    paper: "Tolstikhin, Bousquet, Gelly & Schoelkopf 2017, Wasserstein Auto-Encoders",
    family: Family::LatentVariable,
    default_epochs: 20,
    default_batch_size: 100,
    default_config: || serde_json::to_value(WaeConfig::default()).unwrap_or_default(),
    build: |cfg, rng| {
        Ok(Box::new(Wae::new(
            Penalty::Mmd,
            MMD_ENTRY.parse_config(cfg)?,
            rng,
        )?))
    },
    presets: &[],
};

pub static GAN_ENTRY: Entry = Entry {
    name: "wae-gan",
    title: "Wasserstein autoencoder, adversarial penalty (latent discriminator), 8-d code",
    paper: "Tolstikhin, Bousquet, Gelly & Schoelkopf 2017, Wasserstein Auto-Encoders",
    family: Family::LatentVariable,
    default_epochs: 20,
    default_batch_size: 100,
    default_config: || serde_json::to_value(WaeConfig::default()).unwrap_or_default(),
    build: |cfg, rng| {
        Ok(Box::new(Wae::new(
            Penalty::Gan,
            GAN_ENTRY.parse_config(cfg)?,
            rng,
        )?))
    },
    presets: &[],
};

/// The divergence D_Z between the codes and the prior.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Penalty {
    Mmd,
    Gan,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaeConfig {
    /// Adam's learning rate (betas 0.5, 0.999) for encoder and decoder.
    pub lr: f64,
    /// Adam's learning rate (betas 0.5, 0.999) for the discriminator (WAE-GAN only).
    pub lr_adv: f64,
    /// Size of the code z.
    pub latent: usize,
    /// Width of the encoder's and decoder's two hidden layers.
    pub hidden: usize,
    /// Width of the discriminator's three hidden layers (WAE-GAN only).
    pub disc_hidden: usize,
    /// The weight of the latent penalty.
    pub lambda: f64,
    /// The prior's variance sigma_z^2: P_Z = N(0, sigma_z^2 I).
    pub prior_var: f64,
    /// The reconstruction cost is recon_scale * ||x - G(Q(x))||^2.
    pub recon_scale: f64,
}

impl Default for WaeConfig {
    fn default() -> Self {
        WaeConfig {
            lr: 1e-3,
            lr_adv: 5e-4,
            latent: 8,
            hidden: 1000,
            disc_hidden: 512,
            lambda: 10.0,
            prior_var: 1.0,
            recon_scale: 0.05,
        }
    }
}

pub struct Wae {
    penalty: Penalty,
    config: WaeConfig,
    encoder: Mlp,
    decoder: Mlp,
    /// WAE-GAN's latent discriminator.
    discriminator: Option<Mlp>,
    opt: Adam,
    opt_d: Option<Adam>,
}

const PIXELS: usize = 28 * 28;

impl Wae {
    pub fn new(penalty: Penalty, config: WaeConfig, rng: &mut Rng) -> Result<Wae> {
        let c = &config;
        let name = Wae::name_of(penalty);
        if c.latent == 0 || c.latent > 1024 {
            return Err(Error::invalid(
                name,
                format!("latent must be in 1..=1024, got {}", c.latent),
            ));
        }
        if c.hidden == 0 || c.hidden > 8192 || c.disc_hidden == 0 || c.disc_hidden > 8192 {
            return Err(Error::invalid(
                name,
                format!(
                    "hidden and disc_hidden must be in 1..=8192, got {} and {}",
                    c.hidden, c.disc_hidden
                ),
            ));
        }
        for (what, v) in [
            ("lambda", c.lambda),
            ("prior_var", c.prior_var),
            ("recon_scale", c.recon_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("{what} must be positive and finite, got {v}"),
                ));
            }
        }
        let (h, z) = (c.hidden, c.latent);
        let encoder = Mlp::new(&[PIXELS, h, h, z], rng)?;
        let decoder = Mlp::new(&[z, h, h, PIXELS], rng)?;
        let discriminator = match penalty {
            Penalty::Mmd => None,
            Penalty::Gan => {
                let hd = c.disc_hidden;
                Some(Mlp::new(&[z, hd, hd, hd, 1], rng)?)
            }
        };
        let adam = |lr: f64| AdamConfig {
            lr,
            betas: (0.5, 0.999),
            ..AdamConfig::default()
        };
        let mut ae = nn::prefixed("encoder", encoder.named_parameters());
        ae.extend(nn::prefixed("decoder", decoder.named_parameters()));
        let opt_d = match &discriminator {
            None => None,
            Some(d) => Some(Adam::new(
                nn::prefixed("discriminator", d.named_parameters()),
                adam(c.lr_adv),
            )?),
        };
        Ok(Wae {
            opt: Adam::new(ae, adam(c.lr))?,
            opt_d,
            penalty,
            config,
            encoder,
            decoder,
            discriminator,
        })
    }

    fn name_of(penalty: Penalty) -> &'static str {
        match penalty {
            Penalty::Mmd => MMD_ENTRY.name,
            Penalty::Gan => GAN_ENTRY.name,
        }
    }

    /// Q(x): the code [B, latent] of images [B, 1, 28, 28].
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.shape().first().copied().unwrap_or(0);
        self.encoder.forward(&x.reshape(&[b, PIXELS])?)
    }

    /// G(z): images [B, 1, 28, 28] in [0, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.shape().first().copied().unwrap_or(0);
        self.decoder.forward(z)?.sigmoid()?.reshape(&[b, 1, 28, 28])
    }

    /// c(x, G(Q(x))) = ||x - G(Q(x))||^2 per image, `[B]`.
    pub fn squared_error(x: &Tensor, r: &Tensor) -> Result<Tensor> {
        let b = x.shape().first().copied().unwrap_or(0);
        r.sub(x)?
            .square()?
            .reshape(&[b, x.numel() / b.max(1)])?
            .sum(&[1], false)
    }

    fn prior(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Tensor::randn(&[n, self.config.latent], DType::F32, rng)
            .mul_scalar(self.config.prior_var.sqrt())
    }
}

impl Module for Wae {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut children: Vec<(&str, &dyn Module)> =
            vec![("encoder", &self.encoder), ("decoder", &self.decoder)];
        if let Some(d) = &self.discriminator {
            children.push(("discriminator", d));
        }
        nn::children(&children, |m| m.named_parameters())
    }
}

impl LatentModel for Wae {
    fn latent_dim(&self) -> usize {
        self.config.latent
    }

    fn input_pixels(&self) -> Pixels {
        Pixels::Unit
    }

    fn encode_mean(&self, x: &Tensor) -> Result<Tensor> {
        self.encode(x)
    }

    fn decode_mean(&self, z: &Tensor) -> Result<Tensor> {
        self.decode(z)
    }

    fn sample_prior(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        self.prior(n, rng)
    }
}

impl GenerativeModel for Wae {
    fn name(&self) -> &'static str {
        Wae::name_of(self.penalty)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
    }

    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        let mut v: Vec<(&'static str, &dyn Optimizer)> = vec![("optimizer", &self.opt)];
        if let Some(d) = &self.opt_d {
            v.push(("optimizer_d", d));
        }
        v
    }

    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        let mut v: Vec<(&'static str, &mut dyn Optimizer)> = vec![("optimizer", &mut self.opt)];
        if let Some(d) = &mut self.opt_d {
            v.push(("optimizer_d", d));
        }
        v
    }

    fn latent(&self) -> Option<&dyn LatentModel> {
        Some(self)
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let x = batch.tensor(Pixels::Unit, rng)?;
        let n = x.shape().first().copied().unwrap_or(0);
        let lambda = self.config.lambda;
        let z_prior = self.prior(n, rng)?;
        let mut losses = Vec::new();
        // WAE-GAN, Algorithm 1: first the discriminator, prior draws (1) against codes (0)
        if let (Some(d), Some(opt_d)) = (&self.discriminator, &mut self.opt_d) {
            let z_data = autograd::no_grad(|| self.encoder.forward(&x.reshape(&[n, PIXELS])?))?;
            let d_loss =
                bce_to(&d.forward(&z_prior)?, 1.0)?.add(&bce_to(&d.forward(&z_data)?, 0.0)?)?;
            opt_d.minimize(&d_loss)?;
            losses.push(("d_loss".to_string(), d_loss.item()?));
        }
        // then encoder and decoder: reconstruction + lambda * penalty
        let z = self.encode(&x)?;
        let recon = Wae::squared_error(&x, &self.decode(&z)?)?
            .mean_all()?
            .mul_scalar(self.config.recon_scale)?;
        let penalty = match &self.discriminator {
            // the estimate needs two codes: a last batch of one image trains on reconstruction
            None if n < 2 => Tensor::scalar(0.0, DType::F32),
            None => mmd_imq(&z, &z_prior, self.config.prior_var)?,
            Some(d) => bce_to(&d.forward(&z)?, 1.0)?,
        };
        let loss = recon.add(&penalty.mul_scalar(lambda)?)?;
        self.opt.minimize(&loss)?;
        let name = match self.penalty {
            Penalty::Mmd => "mmd",
            Penalty::Gan => "g_loss",
        };
        let mut out = vec![
            ("loss".to_string(), loss.item()?),
            ("reconstruction".to_string(), recon.item()?),
            (name.to_string(), penalty.item()?),
        ];
        out.extend(losses);
        Ok(out)
    }

    /// The reconstruction error of the held-out images ([`crate::latent::reconstruction_sq_error`]).
    fn validation_loss(&mut self, split: &Split, rng: &mut Rng) -> Result<Option<f64>> {
        crate::latent::reconstruction_sq_error(self, split, rng).map(Some)
    }

    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let z = self.prior(n, rng)?;
        self.decode(&z)
    }

    /// The squared reconstruction error and the latent MMD
    /// ([`crate::latent::autoencoder_metrics`]), then the sample metrics.
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut metrics = crate::latent::autoencoder_metrics(ctx, self)?;
        let samples = draw_samples(self, ctx)?;
        metrics.extend(ctx.sample_metrics(&samples, Pixels::Unit, None)?);
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::data;

    #[test]
    fn losses_fall_over_a_few_steps() {
        let m = data::embedded().unwrap();
        let batch = m.train.batch(&(0..64).collect::<Vec<_>>());
        for penalty in [Penalty::Mmd, Penalty::Gan] {
            let mut rng = Rng::new(3);
            let cfg = WaeConfig {
                hidden: 64,
                disc_hidden: 32,
                ..WaeConfig::default()
            };
            let mut wae = Wae::new(penalty, cfg, &mut rng).unwrap();
            let first = wae.train_step(&batch, &mut rng).unwrap();
            let mut last = first.clone();
            for _ in 0..30 {
                last = wae.train_step(&batch, &mut rng).unwrap();
            }
            assert!(
                last[0].1 < 0.8 * first[0].1 && last[1].1 < 0.8 * first[1].1,
                "{penalty:?}: {first:?} -> {last:?}"
            );
            let s = autograd::no_grad(|| wae.sample(5, &mut rng)).unwrap();
            assert_eq!(s.shape(), &[5, 1, 28, 28]);
            assert!(s.to_vec_f64().iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }
}
