//! The adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow & Frey 2015, "Adversarial
//! Autoencoders").
//!
//! An autoencoder (encoder q(z|x), decoder p(x|z)) whose codes are matched to a prior p(z) by a
//! discriminator D on the code space instead of a KL term: D tells draws from the prior from
//! codes of data, i.e. from the aggregated posterior q(z) = E_{p_data(x)} q(z|x), and the encoder,
//! as D's generator, learns to fool it. Every mini-batch is trained in the paper's two phases:
//!
//! ```text
//!   reconstruction:  min_{enc,dec}  E_x[ -log p(x | z) ],  z ~ q(z|x)
//!   regularisation:  max_D          E_{z ~ p(z)}[log D(z)] + E_x[log(1 - D(z~q(z|x)))]   (D step)
//!                    min_enc        E_x[ -log D(z~q(z|x)) ]            (generator step, non-saturating)
//! ```
//!
//! At the game's equilibrium q(z) = p(z), so decoding prior draws gives data. The adversarial
//! regulariser needs only *samples* of p(z), never its density, and it constrains the aggregate
//! q(z), not each q(z|x): the prior can be a mixture of 10 elongated 2-D Gaussians on a ring
//! (`prior = "mixture"`), with gaps between the petals that the codes must leave empty. A VAE's
//! KL(q(z|x) || p(z)) needs p's density in closed form and pulls every q(z|x) toward the whole of
//! p, so its codes cannot take such a shape.
//!
//! With `use_labels` (the paper's section 3, "incorporating label information in the adversarial
//! regularization", and its figure 4) the discriminator also sees the digit as a one-hot vector:
//! prior draws come from component k with the one-hot of k, codes of images of digit k carry the
//! one-hot of k, so the discriminator's decision boundary is switched per digit and every digit is
//! pushed into its own petal. Labels shape only the regulariser: the encoder never sees them.
//!
//! Encoder 784-1000-1000-z, decoder z-1000-1000-784 (logits), discriminator z-1000-1000-1 (ReLU),
//! the paper's MNIST sizes. The encoder is deterministic (z = f(x), the paper's default) or
//! Gaussian (z = mu(x) + sigma(x) eps, `encoder = "gaussian"`). The decoder's pixels are
//! Bernoulli, -log p(x|z) is the cross-entropy with the grey image (in [0, 1]) summed over pixels.
//! Three Adam optimizers: encoder + decoder (reconstruction), discriminator, encoder (generator).
//!
//! Defaults: a Gaussian prior on an 8-d code, adversarial learning rate 2e-4. The 2-d mixture is
//! `genzoo train aae --set prior=mixture --set latent=2 --set lr_adv=1e-3 [--set use_labels=true]`,
//! whose `latent_scatter.png` shows where the digits went: in 2-d the reconstruction term is the
//! stronger pull and the regulariser needs the larger step to hold the codes to the petals (with
//! 2e-4 they spill far outside the ring), while on the 8-d code 1e-3 makes the game unstable
//! (test reconstruction error twice as large, FCD 563 instead of about 200).

use crate::adversarial::bce_to;
use crate::latent::vae::bernoulli_nll;
use crate::latent::{LatentModel, Mlp};
use crate::model::{draw_samples, Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Pixels, Split};
use crate::program::eval::{EvalContext, Metric};
use autograd::nn::{self, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static ENTRY: Entry = Entry {
    name: "aae",
    title: "Adversarial autoencoder, MLP 784-1000-1000-z, latent discriminator (Gaussian or 10-Gaussian mixture prior)",
    paper: "Makhzani, Shlens, Jaitly, Goodfellow & Frey 2015, Adversarial Autoencoders",
    family: Family::LatentVariable,
    default_epochs: 20,
    default_batch_size: 100,
    default_config: || serde_json::to_value(AaeConfig::default()).unwrap_or_default(),
    build: |cfg, rng| Ok(Box::new(Aae::new(ENTRY.parse_config(cfg)?, rng)?)),
    presets: &[],
};

/// The prior p(z) the codes are matched to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prior {
    /// N(0, I).
    Gaussian,
    /// 10 Gaussians in 2-D, component k centred at radius [`MIXTURE_RADIUS`] and angle 2 pi k / 10,
    /// with standard deviation [`MIXTURE_SD_RADIAL`] along the radius and
    /// [`MIXTURE_SD_TANGENTIAL`] across it (petals of a flower); needs `latent = 2`.
    Mixture,
}

/// How an image becomes a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    /// z = f(x).
    Deterministic,
    /// z = mu(x) + exp(logvar(x) / 2) eps, eps ~ N(0, I).
    Gaussian,
}

pub const MIXTURE_COMPONENTS: usize = 10;
const CLASSES: usize = 10;
pub const MIXTURE_RADIUS: f64 = 2.0;
pub const MIXTURE_SD_RADIAL: f64 = 0.5;
pub const MIXTURE_SD_TANGENTIAL: f64 = 0.1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AaeConfig {
    /// Adam's learning rate in the reconstruction phase (encoder and decoder).
    pub lr: f64,
    /// Adam's learning rate (betas 0.5, 0.999) of the discriminator and of the encoder's
    /// generator step.
    pub lr_adv: f64,
    /// Size of the code z.
    pub latent: usize,
    /// Width of the encoder's and decoder's two hidden layers.
    pub hidden: usize,
    /// Width of the discriminator's two hidden layers.
    pub disc_hidden: usize,
    pub prior: Prior,
    pub encoder: EncoderKind,
    /// The discriminator also sees the digit's one-hot label, prior draws come from the component
    /// of their label (mixture prior only; see the module's documentation).
    pub use_labels: bool,
}

impl Default for AaeConfig {
    fn default() -> Self {
        AaeConfig {
            lr: 1e-3,
            lr_adv: 2e-4,
            latent: 8,
            hidden: 1000,
            disc_hidden: 1000,
            prior: Prior::Gaussian,
            encoder: EncoderKind::Deterministic,
            use_labels: false,
        }
    }
}

pub struct Aae {
    config: AaeConfig,
    /// x -> z (deterministic), or x -> (mu, logvar) stacked as 2 * latent outputs (Gaussian).
    encoder: Mlp,
    /// z -> Bernoulli logits of the 784 pixels.
    decoder: Mlp,
    /// z -> the logit of "drawn from the prior".
    discriminator: Mlp,
    opt_ae: Adam,
    opt_d: Adam,
    opt_g: Adam,
}

const PIXELS: usize = 28 * 28;

impl Aae {
    pub fn new(config: AaeConfig, rng: &mut Rng) -> Result<Aae> {
        let c = &config;
        if c.latent == 0 || c.latent > 1024 {
            return Err(Error::invalid(
                ENTRY.name,
                format!("latent must be in 1..=1024, got {}", c.latent),
            ));
        }
        if c.hidden == 0 || c.hidden > 8192 || c.disc_hidden == 0 || c.disc_hidden > 8192 {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "hidden and disc_hidden must be in 1..=8192, got {} and {}",
                    c.hidden, c.disc_hidden
                ),
            ));
        }
        if c.prior == Prior::Mixture && c.latent != 2 {
            return Err(Error::invalid(
                ENTRY.name,
                format!(
                    "the mixture prior is 2-D: set latent=2 (got latent {})",
                    c.latent
                ),
            ));
        }
        if c.use_labels && c.prior != Prior::Mixture {
            return Err(Error::invalid(
                ENTRY.name,
                "use_labels picks a mixture component per digit: set prior=mixture",
            ));
        }
        let (h, hd, z) = (c.hidden, c.disc_hidden, c.latent);
        let enc_out = match c.encoder {
            EncoderKind::Deterministic => z,
            EncoderKind::Gaussian => 2 * z,
        };
        let encoder = Mlp::new(&[PIXELS, h, h, enc_out], rng)?;
        let decoder = Mlp::new(&[z, h, h, PIXELS], rng)?;
        let d_in = if c.use_labels { z + CLASSES } else { z };
        let discriminator = Mlp::new(&[d_in, hd, hd, 1], rng)?;
        let adam = |lr: f64, betas: (f64, f64)| AdamConfig {
            lr,
            betas,
            ..AdamConfig::default()
        };
        let enc = nn::prefixed("encoder", encoder.named_parameters());
        let mut ae = enc.clone();
        ae.extend(nn::prefixed("decoder", decoder.named_parameters()));
        let disc = nn::prefixed("discriminator", discriminator.named_parameters());
        Ok(Aae {
            opt_ae: Adam::new(ae, adam(c.lr, (0.9, 0.999)))?,
            opt_d: Adam::new(disc, adam(c.lr_adv, (0.5, 0.999)))?,
            opt_g: Adam::new(enc, adam(c.lr_adv, (0.5, 0.999)))?,
            config,
            encoder,
            decoder,
            discriminator,
        })
    }

    /// q(z|x): (mean, log-variance) for the Gaussian encoder, (z, None) for the deterministic one.
    fn encode_params(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let b = x.shape().first().copied().unwrap_or(0);
        let out = self.encoder.forward(&x.reshape(&[b, PIXELS])?)?;
        let z = self.config.latent;
        Ok(match self.config.encoder {
            EncoderKind::Deterministic => (out, None),
            EncoderKind::Gaussian => (out.narrow(1, 0, z)?, Some(out.narrow(1, z, z)?)),
        })
    }

    /// z ~ q(z|x) (reparameterised, so gradients reach the encoder).
    pub fn encode_sample(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        match self.encode_params(x)? {
            (z, None) => Ok(z),
            (mu, Some(logvar)) => {
                let eps = Tensor::randn(mu.shape(), mu.dtype(), rng);
                mu.add(&logvar.mul_scalar(0.5)?.exp()?.mul(&eps)?)
            }
        }
    }

    /// D's logit that codes `z` [B, latent] are prior draws, with their digits' one-hot labels
    /// [B, 10] when the regulariser uses labels.
    fn discriminate(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        match labels {
            Some(l) => self
                .discriminator
                .forward(&Tensor::concat(&[z.clone(), l.clone()], 1)?),
            None => self.discriminator.forward(z),
        }
    }

    /// Bernoulli logits [B, 1, 28, 28] of p(x|z).
    pub fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.shape().first().copied().unwrap_or(0);
        self.decoder.forward(z)?.reshape(&[b, 1, 28, 28])
    }

    /// `n` draws from the prior.
    pub fn prior_sample(config: &AaeConfig, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Aae::prior_sample_of(config, n, None, rng)
    }

    /// `n` draws from the prior; with `components` (mixture prior), draw i comes from component
    /// `components[i]` instead of a uniformly chosen one.
    fn prior_sample_of(
        config: &AaeConfig,
        n: usize,
        components: Option<&[usize]>,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        match config.prior {
            Prior::Gaussian => Ok(Tensor::randn(&[n, config.latent], DType::F32, rng)),
            Prior::Mixture => {
                let mut v = Vec::with_capacity(2 * n);
                for i in 0..n {
                    let k = match components {
                        Some(c) => (c[i] % MIXTURE_COMPONENTS) as f64,
                        None => rng.below(MIXTURE_COMPONENTS as u64) as f64,
                    };
                    let angle = 2.0 * std::f64::consts::PI * k / MIXTURE_COMPONENTS as f64;
                    let r = MIXTURE_RADIUS + MIXTURE_SD_RADIAL * rng.normal();
                    let t = MIXTURE_SD_TANGENTIAL * rng.normal();
                    let (s, c) = angle.sin_cos();
                    v.push((r * c - t * s) as f32);
                    v.push((r * s + t * c) as f32);
                }
                Tensor::from_vec(v, &[n, 2])
            }
        }
    }
}

impl Module for Aae {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("encoder", &self.encoder),
                ("decoder", &self.decoder),
                ("discriminator", &self.discriminator),
            ],
            |m| m.named_parameters(),
        )
    }
}

impl LatentModel for Aae {
    fn latent_dim(&self) -> usize {
        self.config.latent
    }

    fn input_pixels(&self) -> Pixels {
        Pixels::Unit
    }

    fn encode_mean(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.encode_params(x)?.0)
    }

    fn decode_mean(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_logits(z)?.sigmoid()
    }

    fn sample_prior(&self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        Aae::prior_sample(&self.config, n, rng)
    }
}

impl GenerativeModel for Aae {
    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
    }

    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        vec![
            ("optimizer", &self.opt_ae),
            ("optimizer_d", &self.opt_d),
            ("optimizer_g", &self.opt_g),
        ]
    }

    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        vec![
            ("optimizer", &mut self.opt_ae),
            ("optimizer_d", &mut self.opt_d),
            ("optimizer_g", &mut self.opt_g),
        ]
    }

    fn latent(&self) -> Option<&dyn LatentModel> {
        Some(self)
    }

    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let x = batch.tensor(Pixels::Unit, rng)?;
        let n = x.shape().first().copied().unwrap_or(0);
        // reconstruction phase: encoder and decoder
        let z = self.encode_sample(&x, rng)?;
        let recon = bernoulli_nll(&self.decode_logits(&z)?, &x)?.mean_all()?;
        self.opt_ae.minimize(&recon)?;
        // regularisation phase, 1: the discriminator tells prior draws (1) from codes (0)
        let digits = batch.label_indices();
        let (labels, components) = if self.config.use_labels {
            let onehot = Tensor::one_hot(&digits, CLASSES, DType::F32)?;
            (Some(onehot), Some(digits.as_slice()))
        } else {
            (None, None)
        };
        let z_prior = Aae::prior_sample_of(&self.config, n, components, rng)?;
        let z_data = no_grad(|| self.encode_sample(&x, rng))?;
        let d_loss = bce_to(&self.discriminate(&z_prior, labels.as_ref())?, 1.0)?
            .add(&bce_to(&self.discriminate(&z_data, labels.as_ref())?, 0.0)?)?;
        self.opt_d.minimize(&d_loss)?;
        // regularisation phase, 2: the encoder, as the generator, makes its codes pass for prior draws
        let z = self.encode_sample(&x, rng)?;
        let g_loss = bce_to(&self.discriminate(&z, labels.as_ref())?, 1.0)?;
        self.opt_g.minimize(&g_loss)?;
        Ok(vec![
            ("reconstruction".into(), recon.item()?),
            ("d_loss".into(), d_loss.item()?),
            ("g_loss".into(), g_loss.item()?),
        ])
    }

    /// The reconstruction error of the held-out images ([`crate::latent::reconstruction_sq_error`]).
    fn validation_loss(&mut self, split: &Split, rng: &mut Rng) -> Result<Option<f64>> {
        crate::latent::reconstruction_sq_error(self, split, rng).map(Some)
    }

    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let z = self.sample_prior(n, rng)?;
        self.decode_mean(&z)
    }

    /// The reconstruction cross-entropy (nats per test image, code = the encoder's mean), the
    /// squared reconstruction error and the latent MMD ([`crate::latent::autoencoder_metrics`]),
    /// then the sample metrics.
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut metrics = crate::program::eval::mean_per_image(
            ctx,
            Pixels::Unit,
            100,
            &["reconstruction"],
            |x, _, _| {
                let z = self.encode_mean(x)?;
                Ok(vec![
                    bernoulli_nll(&self.decode_logits(&z)?, x)?.to_vec_f64()
                ])
            },
        )?;
        metrics.extend(crate::latent::autoencoder_metrics(ctx, self)?);
        let samples = draw_samples(self, ctx)?;
        metrics.extend(ctx.sample_metrics(&samples, Pixels::Unit, None)?);
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::data;

    fn tiny(prior: Prior, latent: usize, encoder: EncoderKind) -> AaeConfig {
        AaeConfig {
            hidden: 64,
            disc_hidden: 32,
            latent,
            prior,
            encoder,
            ..AaeConfig::default()
        }
    }

    #[test]
    fn the_mixture_prior_puts_ten_petals_on_a_ring() {
        let cfg = tiny(Prior::Mixture, 2, EncoderKind::Deterministic);
        let z = Aae::prior_sample(&cfg, 5000, &mut Rng::new(1))
            .unwrap()
            .to_vec_f64();
        let mut counts = [0usize; MIXTURE_COMPONENTS];
        let mut radius = 0.0;
        for p in z.chunks(2) {
            let angle = p[1].atan2(p[0]).rem_euclid(2.0 * std::f64::consts::PI);
            let k = (angle / (2.0 * std::f64::consts::PI) * 10.0).round() as usize % 10;
            counts[k] += 1;
            radius += p[0].hypot(p[1]);
        }
        radius /= 5000.0;
        assert!((radius - MIXTURE_RADIUS).abs() < 0.05, "{radius}");
        assert!(
            counts.iter().all(|&c| (400..600).contains(&c)),
            "{counts:?}"
        );
        assert!(Aae::new(
            tiny(Prior::Mixture, 8, EncoderKind::Deterministic),
            &mut Rng::new(0)
        )
        .is_err());
        let labelled = AaeConfig {
            use_labels: true,
            ..tiny(Prior::Gaussian, 2, EncoderKind::Deterministic)
        };
        assert!(Aae::new(labelled, &mut Rng::new(0)).is_err());
        // a draw for label k comes from petal k: its angle is near 2 pi k / 10
        let ks: Vec<usize> = (0..1000).map(|i| i % 10).collect();
        let z = Aae::prior_sample_of(&cfg, 1000, Some(&ks), &mut Rng::new(2))
            .unwrap()
            .to_vec_f64();
        for (p, k) in z.chunks(2).zip(&ks) {
            let angle = p[1].atan2(p[0]).rem_euclid(2.0 * std::f64::consts::PI);
            let centre = 2.0 * std::f64::consts::PI * *k as f64 / 10.0;
            let off = (angle - centre + std::f64::consts::PI)
                .rem_euclid(2.0 * std::f64::consts::PI)
                - std::f64::consts::PI;
            assert!(off.abs() < std::f64::consts::PI / 10.0, "label {k}: {p:?}");
        }
    }

    #[test]
    fn losses_fall_over_a_few_steps() {
        let m = data::embedded().unwrap();
        let batch = m.train.batch(&(0..64).collect::<Vec<_>>());
        for (prior, latent, enc, use_labels) in [
            (Prior::Gaussian, 8, EncoderKind::Deterministic, false),
            (Prior::Mixture, 2, EncoderKind::Gaussian, false),
            (Prior::Mixture, 2, EncoderKind::Deterministic, true),
        ] {
            let mut rng = Rng::new(2);
            let cfg = AaeConfig {
                use_labels,
                ..tiny(prior, latent, enc)
            };
            let mut aae = Aae::new(cfg, &mut rng).unwrap();
            let first = aae.train_step(&batch, &mut rng).unwrap();
            let mut last = first.clone();
            for _ in 0..30 {
                last = aae.train_step(&batch, &mut rng).unwrap();
            }
            assert!(
                last[0].1 < 0.8 * first[0].1,
                "{prior:?}: reconstruction {first:?} -> {last:?}"
            );
            assert!(last.iter().all(|(_, v)| v.is_finite()), "{last:?}");
            let s = no_grad(|| aae.sample(5, &mut rng)).unwrap();
            assert_eq!(s.shape(), &[5, 1, 28, 28]);
            assert!(s.to_vec_f64().iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn the_discriminator_learns_to_tell_prior_from_codes() {
        // with the encoder frozen, the D step alone must lower the D loss
        let m = data::embedded().unwrap();
        let batch = m.train.batch(&(0..64).collect::<Vec<_>>());
        let mut rng = Rng::new(4);
        let cfg = AaeConfig {
            lr_adv: 1e-3,
            ..tiny(Prior::Mixture, 2, EncoderKind::Deterministic)
        };
        let mut aae = Aae::new(cfg, &mut rng).unwrap();
        let x = batch.tensor(Pixels::Unit, &mut rng).unwrap();
        let z_data = no_grad(|| aae.encode_sample(&x, &mut rng)).unwrap();
        let d_loss = |aae: &mut Aae, rng: &mut Rng, step: bool| -> f64 {
            let z_prior = Aae::prior_sample(&aae.config, 64, rng).unwrap();
            let l = bce_to(&aae.discriminator.forward(&z_prior).unwrap(), 1.0)
                .unwrap()
                .add(&bce_to(&aae.discriminator.forward(&z_data).unwrap(), 0.0).unwrap())
                .unwrap();
            if step {
                aae.opt_d.zero_grad();
                l.backward().unwrap();
                aae.opt_d.step().unwrap();
            }
            l.item().unwrap()
        };
        let before = d_loss(&mut aae, &mut Rng::new(9), false);
        for _ in 0..200 {
            d_loss(&mut aae, &mut rng, true);
        }
        let after = d_loss(&mut aae, &mut Rng::new(9), false);
        assert!(after < 0.5 * before, "D loss {before} -> {after}");
    }
}
