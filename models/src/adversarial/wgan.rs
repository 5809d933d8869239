//! The Wasserstein GANs: WGAN (Arjovsky, Chintala & Bottou 2017) and WGAN-GP (Gulrajani, Ahmed,
//! Arjovsky, Dumoulin & Courville 2017, "Improved Training of Wasserstein GANs").
//!
//! The critic C scores images (no sigmoid); by Kantorovich-Rubinstein duality
//!
//! ```text
//!   W(p_data, p_g) = sup_{||C||_L <= 1}  E_{x ~ p_data}[C(x)] - E_z[C(G(z))]
//!   critic step:     min_C  E_z[C(G(z))] - E_x[C(x)]   (+ the Lipschitz constraint)
//!   generator step:  min_G  -E_z[C(G(z))]
//! ```
//!
//! and E_x[C(x)] - E_z[C(G(z))] on a batch is the Wasserstein estimate the run logs
//! (`wasserstein`), meaningful (up to the Lipschitz constant) because the critic is trained
//! towards the supremum: five critic steps per generator step, each on its own batch.
//!
//! The Lipschitz constraint:
//! - WGAN: every critic weight clipped to [-0.01, 0.01] after each step, RMSprop 5e-5 (the
//!   paper: momentum-based optimizers made the critic unstable);
//! - WGAN-GP: the penalty 10 E[(||grad_x C(x_hat)||_2 - 1)^2] on random interpolates
//!   x_hat = e x + (1 - e) G(z), e ~ U(0, 1) per sample, the norm over all pixels of each sample
//!   ([`gradient_penalty`]); the penalty is differentiated through the gradient (a double
//!   backward through the critic's convolutions and leaky ReLUs). Adam 1e-4 (0.5, 0.9). The
//!   critic has no normalisation: the penalty is per sample, which BatchNorm would couple.
//!
//! Networks: the DCGAN generator and the critic of shapes.json's `wgangp_mnist_step` (the DCGAN
//! discriminator without its BatchNorm) for both.

use crate::adversarial::networks::{check_latent, ConvDiscriminator, ConvGenerator, NormOptions};
use crate::adversarial::{epoch_metrics, noise, Monitor, Network, Players};
use crate::model::{Entry, Family, GenerativeModel, Losses};
use crate::program::data::{Batch, Pixels};
use crate::program::eval::{EvalContext, Metric};
use autograd::nn::{self, Module};
use autograd::optim::{Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig};
use autograd::{no_grad, DType, Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

pub static WGAN_ENTRY: Entry = Entry {
    name: "wgan",
    title: "WGAN, weight-clipped critic (RMSprop), DCGAN generator",
    paper: "Arjovsky, Chintala & Bottou 2017, Wasserstein GAN",
    family: Family::Adversarial,
    default_epochs: 20,
    default_batch_size: 64,
    default_config: || serde_json::to_value(WganConfig::clipped()).unwrap_or_default(),
    build: |cfg, rng| {
        Ok(Box::new(Wgan::new(
            &WGAN_ENTRY,
            WGAN_ENTRY.parse_config(cfg)?,
            rng,
        )?))
    },
    presets: &[],
};

pub static WGAN_GP_ENTRY: Entry = Entry {
    name: "wgan-gp",
    title: "WGAN-GP, gradient-penalty critic without normalisation (shapes.json wgangp_mnist_step)",
    paper: "Gulrajani et al. 2017, Improved Training of Wasserstein GANs",
    family: Family::Adversarial,
    // about 19 minutes on the 2-core VM (12.2 s an epoch): G takes one step in five, and its
    // FCD still falls there (481 after 20 epochs, 225 after 95)
    default_epochs: 95,
    default_batch_size: 64,
    default_config: || serde_json::to_value(WganConfig::penalised()).unwrap_or_default(),
    build: |cfg, rng| {
        Ok(Box::new(Wgan::new(
            &WGAN_GP_ENTRY,
            WGAN_GP_ENTRY.parse_config(cfg)?,
            rng,
        )?))
    },
    presets: &[],
};

/// How the critic is kept (about) 1-Lipschitz.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// Weights clipped to [-c, c] after every critic step.
    Clip(f64),
    /// The gradient penalty with weight lambda.
    Penalty(f64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WganConfig {
    /// Learning rate of both players (RMSprop with clipping, Adam with the penalty).
    pub lr: f64,
    /// Adam's betas (the penalty's optimizer).
    pub beta1: f64,
    pub beta2: f64,
    pub latent: usize,
    /// Critic steps per generator step.
    pub n_critic: usize,
    pub constraint: Constraint,
}

impl WganConfig {
    /// The WGAN paper's settings: clip 0.01, RMSprop 5e-5, five critic steps.
    pub fn clipped() -> WganConfig {
        WganConfig {
            lr: 5e-5,
            beta1: 0.5,
            beta2: 0.9,
            latent: 100,
            n_critic: 5,
            constraint: Constraint::Clip(0.01),
        }
    }

    /// WGAN-GP's: lambda 10, Adam 1e-4 (0.5, 0.9), five critic steps.
    pub fn penalised() -> WganConfig {
        WganConfig {
            lr: 1e-4,
            constraint: Constraint::Penalty(10.0),
            ..WganConfig::clipped()
        }
    }
}

impl Default for WganConfig {
    fn default() -> Self {
        WganConfig::penalised()
    }
}

pub struct Wgan {
    entry: &'static Entry,
    config: WganConfig,
    pub players: Players<ConvGenerator, ConvDiscriminator>,
    /// Critic steps taken, saved with the weights so that a resumed run takes its generator
    /// steps where the uninterrupted one does.
    critic_steps: Tensor,
}

impl Wgan {
    pub fn new(entry: &'static Entry, config: WganConfig, rng: &mut Rng) -> Result<Wgan> {
        check_latent(entry.name, "latent", config.latent)?;
        if config.n_critic == 0 || config.n_critic > 100 {
            return Err(Error::invalid(
                entry.name,
                format!("n_critic must be in 1..=100, got {}", config.n_critic),
            ));
        }
        match config.constraint {
            Constraint::Clip(c) if !(c > 0.0 && c.is_finite()) => {
                return Err(Error::invalid(
                    entry.name,
                    format!("the clip value must be positive and finite, got {c}"),
                ))
            }
            Constraint::Penalty(l) if !(l >= 0.0 && l.is_finite()) => {
                return Err(Error::invalid(
                    entry.name,
                    format!("the penalty weight must be >= 0 and finite, got {l}"),
                ))
            }
            _ => {}
        }
        let generator = ConvGenerator::new(config.latent, NormOptions::default(), rng)?;
        let critic = ConvDiscriminator::new(None, rng)?;
        let g_params = nn::prefixed("generator", generator.named_parameters());
        let c_params = nn::prefixed("discriminator", critic.named_parameters());
        let (opt_g, opt_d): (Box<dyn Optimizer>, Box<dyn Optimizer>) = match config.constraint {
            Constraint::Clip(_) => {
                let rms = RmsPropConfig {
                    lr: config.lr,
                    ..RmsPropConfig::default()
                };
                (
                    Box::new(RmsProp::new(g_params, rms)?),
                    Box::new(RmsProp::new(c_params, rms)?),
                )
            }
            Constraint::Penalty(_) => {
                let adam = AdamConfig {
                    lr: config.lr,
                    betas: (config.beta1, config.beta2),
                    ..AdamConfig::default()
                };
                (
                    Box::new(Adam::new(g_params, adam)?),
                    Box::new(Adam::new(c_params, adam)?),
                )
            }
        };
        let wgan = Wgan {
            entry,
            players: Players {
                generator,
                discriminator: critic,
                opt_g,
                opt_d,
                latent: config.latent,
                monitor: Monitor::default(),
            },
            critic_steps: Tensor::zeros(&[], DType::F64),
            config,
        };
        if let Constraint::Clip(c) = wgan.config.constraint {
            clip(&wgan.players.discriminator, c)?;
        }
        Ok(wgan)
    }

    /// One critic step on real images `x` in [-1, 1]; every `n_critic`-th also a generator
    /// step.
    fn step(&mut self, x: &Tensor, rng: &mut Rng) -> Result<Losses> {
        let n = x.shape().first().copied().unwrap_or(0);
        let p = &mut self.players;
        let z = noise(n, p.latent, rng);
        let fake = no_grad(|| p.generator.forward(&z))?;
        let c_real = p.discriminator.forward(x)?.mean_all()?;
        let c_fake = p.discriminator.forward(&fake)?.mean_all()?;
        let wasserstein = c_real.sub(&c_fake)?;
        let mut critic_loss = wasserstein.neg()?;
        let mut penalty = None;
        if let Constraint::Penalty(lambda) = self.config.constraint {
            let e = Tensor::rand(&[n, 1, 1, 1], DType::F32, rng);
            let critic = &mut p.discriminator;
            let gp = gradient_penalty(&mut |v| critic.forward(v), x, &fake, &e)?;
            critic_loss = critic_loss.add(&gp.mul_scalar(lambda)?)?;
            penalty = Some(gp.item()?);
        }
        p.opt_d.minimize(&critic_loss)?;
        if let Constraint::Clip(c) = self.config.constraint {
            clip(&p.discriminator, c)?;
        }
        let steps = self.critic_steps.item()? as u64 + 1;
        self.critic_steps = Tensor::scalar(steps as f64, DType::F64);
        let mut out: Losses = vec![
            ("critic_loss".into(), critic_loss.item()?),
            ("wasserstein".into(), wasserstein.item()?),
        ];
        if let Some(gp) = penalty {
            out.push(("penalty".into(), gp));
        }
        if steps.is_multiple_of(self.config.n_critic as u64) {
            let z = noise(n, p.latent, rng);
            let g_loss = p
                .discriminator
                .forward(&p.generator.forward(&z)?)?
                .mean_all()?
                .neg()?;
            p.opt_g.minimize(&g_loss)?;
            out.push(("g_loss".into(), g_loss.item()?));
        }
        Ok(out)
    }
}

/// E[(||grad_x C(x_hat)||_2 - 1)^2] over the batch, x_hat = e x + (1 - e) fake with `e` of shape
/// [n, 1, 1, 1], the norm over all of a sample's pixels. The gradient is recorded
/// (`create_graph`), so the penalty's backward reaches the critic's weights through it.
pub fn gradient_penalty(
    critic: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    real: &Tensor,
    fake: &Tensor,
    e: &Tensor,
) -> Result<Tensor> {
    let x_hat = e
        .mul(&real.detach())?
        .add(&e.neg()?.add_scalar(1.0)?.mul(&fake.detach())?)?
        .requires_grad_(true)?;
    let scores = critic(&x_hat)?.sum_all()?;
    let grads = autograd::grad(&[scores], &[], std::slice::from_ref(&x_hat), true)?;
    let g = grads.into_iter().next().flatten().ok_or_else(|| {
        Error::grad(
            "gradient_penalty",
            "the critic's score does not depend on its input",
        )
    })?;
    let n = g.shape().first().copied().unwrap_or(0);
    // + 1e-12 keeps the square root differentiable at a zero gradient
    let norm = g
        .reshape(&[n, g.numel() / n.max(1)])?
        .square()?
        .sum(&[1], false)?
        .add_scalar(1e-12)?
        .sqrt()?;
    norm.add_scalar(-1.0)?.square()?.mean_all()
}

/// Clips every parameter of `critic` to [-c, c] in place.
fn clip(critic: &dyn Module, c: f64) -> Result<()> {
    for p in critic.parameters() {
        match p.dtype() {
            DType::F32 => p.update_data::<f32>(|d| {
                d.iter_mut().for_each(|v| *v = v.clamp(-c as f32, c as f32))
            })?,
            DType::F64 => {
                p.update_data::<f64>(|d| d.iter_mut().for_each(|v| *v = v.clamp(-c, c)))?
            }
            DType::BF16 => {
                return Err(Error::dtype(
                    "wgan clip",
                    "the critic's parameters are bf16; keep them in f32",
                ))
            }
        }
    }
    Ok(())
}

impl GenerativeModel for Wgan {
    fn name(&self) -> &'static str {
        self.entry.name
    }
    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
    fn pixels(&self) -> Pixels {
        Pixels::Symmetric
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        let mut w = self.players.weights();
        w.push(("critic_steps".into(), self.critic_steps.clone()));
        w
    }
    fn optimizers(&self) -> Vec<(&'static str, &dyn Optimizer)> {
        self.players.optimizers()
    }
    fn optimizers_mut(&mut self) -> Vec<(&'static str, &mut dyn Optimizer)> {
        self.players.optimizers_mut()
    }
    fn set_training(&mut self, training: bool) {
        self.players.set_training(training)
    }
    fn train_step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<Losses> {
        let x = batch.tensor(Pixels::Symmetric, rng)?;
        self.step(&x, rng)
    }
    fn sample(&mut self, n: usize, rng: &mut Rng) -> Result<Tensor> {
        self.players.sample(n, rng)
    }
    fn epoch_metrics(&mut self, ctx: &mut EvalContext) -> Result<Vec<Metric>> {
        epoch_metrics(self, ctx, None)
    }
}

/// Test support: checks the engine's gradients `grads` of `value` with respect to `params` (f64;
/// None where the value does not depend on a parameter, taken as zero) against central
/// differences, at the elements of each parameter that `elements` picks from its size.
/// Returns how many elements were checked.
#[cfg(test)]
pub(crate) fn check_against_finite_differences(
    params: &[Tensor],
    grads: &[Option<Tensor>],
    value: &dyn Fn() -> f64,
    elements: &dyn Fn(usize) -> Vec<usize>,
    tolerance: f64,
) -> usize {
    let h = 1e-6;
    let mut checked = 0;
    for (t, g) in params.iter().zip(grads) {
        let g = g
            .as_ref()
            .map(|g| g.to_vec_f64())
            .unwrap_or_else(|| vec![0.0; t.numel()]);
        for i in elements(t.numel()) {
            let nudge = |d: f64| t.update_data::<f64>(|v| v[i] += d).unwrap();
            nudge(h);
            let up = value();
            nudge(-2.0 * h);
            let down = value();
            nudge(h);
            let fd = (up - down) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= tolerance * (1.0 + fd.abs()),
                "element {i} of a parameter of shape {:?}: {} vs finite differences {fd}",
                t.shape(),
                g[i]
            );
            checked += 1;
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use autograd::nn::{Conv2d, Linear};
    use autograd::Conv2dOptions;

    /// A small f64 critic: Conv(1, 2, k3, s2) -> LeakyReLU 0.2 -> flatten -> Linear(8, 1).
    struct Small {
        conv: Conv2d,
        fc: Linear,
    }

    impl Small {
        fn score(&self, x: &Tensor) -> Result<Tensor> {
            let n = x.shape()[0];
            let h = self.conv.forward(x)?.leaky_relu(0.2)?;
            self.fc.forward(&h.reshape(&[n, 8])?)
        }
        fn params(&self) -> Vec<Tensor> {
            vec![
                self.conv.weight.clone(),
                self.conv.bias.clone().unwrap(),
                self.fc.weight.clone(),
                self.fc.bias.clone().unwrap(),
            ]
        }
    }

    #[test]
    fn the_penalty_gradient_matches_finite_differences() {
        let mut rng = Rng::new(3);
        let opts = Conv2dOptions {
            stride: (2, 2),
            ..Conv2dOptions::default()
        };
        let critic = Small {
            conv: Conv2d::new(1, 2, (3, 3), opts, true, DType::F64, &mut rng).unwrap(),
            fc: Linear::new(8, 1, true, DType::F64, &mut rng).unwrap(),
        };
        let real = Tensor::randn(&[3, 1, 5, 5], DType::F64, &mut rng);
        let fake = Tensor::randn(&[3, 1, 5, 5], DType::F64, &mut rng);
        let e = Tensor::rand(&[3, 1, 1, 1], DType::F64, &mut rng);
        let penalty = |c: &Small| -> f64 {
            gradient_penalty(&mut |v| c.score(v), &real, &fake, &e)
                .unwrap()
                .item()
                .unwrap()
        };
        let p = gradient_penalty(&mut |v| critic.score(v), &real, &fake, &e).unwrap();
        assert!(p.item().unwrap() > 1e-3, "a penalty to differentiate");
        let params = critic.params();
        let grads = autograd::grad(&[p], &[], &params, false).unwrap();
        // a missing gradient: the last bias shifts scores, not slopes
        let checked = check_against_finite_differences(
            &params,
            &grads,
            &|| penalty(&critic),
            &|n| (0..n).collect(),
            1e-6,
        );
        assert_eq!(checked, 2 * 9 + 2 + 8 + 1);
    }

    #[test]
    fn clipping_holds_and_generator_steps_come_every_n_critic() {
        let m = crate::program::data::embedded().unwrap();
        let batch = m.train.batch(&(0..16).collect::<Vec<_>>());
        let mut rng = Rng::new(5);
        let mut w = Wgan::new(&WGAN_ENTRY, WganConfig::clipped(), &mut rng).unwrap();
        for step in 1..=10 {
            let l = w.train_step(&batch, &mut rng).unwrap();
            let has_g = l.iter().any(|(k, _)| k == "g_loss");
            assert_eq!(has_g, step % 5 == 0, "step {step}: {l:?}");
            assert!(l.iter().all(|(_, v)| v.is_finite()));
        }
        for p in w.players.discriminator.parameters() {
            assert!(p.to_vec_f64().iter().all(|v| v.abs() <= 0.01 + 1e-9));
        }
        assert_eq!(w.critic_steps.item().unwrap(), 10.0);
    }

    #[test]
    fn the_critic_learns_to_score_real_above_generated() {
        // the generator frozen: critic steps alone must raise the Wasserstein estimate
        let m = crate::program::data::embedded().unwrap();
        let batch = m.train.batch(&(0..64).collect::<Vec<_>>());
        let mut rng = Rng::new(6);
        let cfg = WganConfig {
            n_critic: 100,
            lr: 1e-3,
            ..WganConfig::penalised()
        };
        let mut w = Wgan::new(&WGAN_GP_ENTRY, cfg, &mut rng).unwrap();
        let first = w.train_step(&batch, &mut rng).unwrap();
        let mut last = first.clone();
        for _ in 0..30 {
            last = w.train_step(&batch, &mut rng).unwrap();
        }
        let get = |l: &Losses, k: &str| l.iter().find(|(n, _)| n == k).unwrap().1;
        assert!(
            get(&last, "wasserstein") > get(&first, "wasserstein") + 0.5,
            "{first:?} -> {last:?}"
        );
    }
}
