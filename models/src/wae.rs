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

use crate::data::{Batch, Pixels};
use crate::eval::{EvalContext, Metric};
use crate::latent::{bce_to, LatentModel, Mlp};
use crate::zoo::{parse_config, Entry, Family, GenerativeModel, Losses};
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
            parse_config("wae-mmd", cfg)?,
            rng,
        )?))
    },
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
            parse_config("wae-gan", cfg)?,
            rng,
        )?))
    },
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
            Penalty::Mmd => "wae-mmd",
            Penalty::Gan => "wae-gan",
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
            opt_d.zero_grad();
            d_loss.backward()?;
            opt_d.step()?;
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
        self.opt.zero_grad();
        loss.backward()?;
        self.opt.step()?;
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

    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        let z = self.prior(n, rng)?;
        self.decode(&z)
    }

    /// The squared reconstruction error and the latent MMD
    /// ([`crate::latent::autoencoder_metrics`]), then the sample metrics.
    fn eval(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        let mut metrics = crate::latent::autoencoder_metrics(ctx, self)?;
        let samples = crate::eval::draw_samples(self, ctx)?;
        metrics.extend(ctx.sample_metrics(&samples, Pixels::Unit, None)?);
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;

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
